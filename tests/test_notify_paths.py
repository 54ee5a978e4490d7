"""notify.py's less travelled paths: no inotify, a watch that cannot be set, a lost LISTEN
connection, a waiter whose event loop is gone."""

import asyncio
import ctypes
import logging
import os
import threading
import time

import pytest
from django.db import connection

from executions import notify
from executions.notify import _EVENT, IN_MODIFY, PgListener, Waiters, WalWatcher, _Thread, _Wake

needs_postgresql = pytest.mark.skipif(
    "connection.vendor != 'postgresql'",
    reason="LISTEN/NOTIFY is PostgreSQL's (SQLite has its log watcher)",
)
needs_sqlite = pytest.mark.skipif(
    "connection.vendor != 'sqlite'", reason="the log watcher is SQLite's"
)


def event(name: bytes, padded: int = 0) -> bytes:
    """One inotify event record as the kernel lays it out (name NUL-padded)."""
    raw = name + b"\0" * padded
    return _EVENT.pack(1, IN_MODIFY, 0, len(raw)) + raw


# --- without inotify -------------------------------------------------------------------------


def test_libc_is_none_when_it_cannot_be_loaded(monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("no libc here")

    monkeypatch.setattr(notify.ctypes, "CDLL", fail)
    assert notify._libc.__wrapped__() is None


def test_libc_is_none_without_inotify(monkeypatch):
    monkeypatch.setattr(notify.ctypes, "CDLL", lambda *a, **k: object())
    assert notify._libc.__wrapped__() is None


def test_libc_is_looked_up_once(monkeypatch):
    """find_library runs `ldconfig -p`, a process; supported() asks before every wait (on
    the event loop): each wait=true on SQLite spent milliseconds on it."""
    looked = []
    find = notify.ctypes.util.find_library
    monkeypatch.setattr(
        notify.ctypes.util, "find_library", lambda name: looked.append(1) or find(name)
    )
    notify._libc.cache_clear()
    try:
        assert all(notify._libc() is not None for _ in range(3))
        assert len(looked) == 1
    finally:
        notify._libc.cache_clear()


def test_libc_has_inotify_here():
    assert notify._libc() is not None


@needs_sqlite
def test_sqlite_without_inotify_is_not_supported(monkeypatch):
    assert notify.sqlite_file() is not None
    assert notify.supported() is True
    monkeypatch.setattr(notify, "_libc", lambda: None)
    assert notify.supported() is False


def test_sqlite_file_of_an_in_memory_database(monkeypatch):
    if connection.vendor != "sqlite":
        assert notify.sqlite_file() is None
        return
    for name in ("", ":memory:", "file:memdb1?mode=memory&cache=shared"):
        monkeypatch.setitem(connection.settings_dict, "NAME", name)
        assert notify.sqlite_file() is None


def test_unsupported_wait_until_polls_done(monkeypatch):
    monkeypatch.setattr(notify, "supported", lambda: False)
    waiters = Waiters()
    calls = []

    def done():
        calls.append(time.monotonic())
        return len(calls) >= 3

    assert waiters.wait_until("k", done, timeout=5, poll=0.01) is True
    assert len(calls) == 3
    assert waiters.listener is None and waiters.events == {}  # no listener was started


def test_unsupported_wait_until_gives_up_at_timeout(monkeypatch):
    monkeypatch.setattr(notify, "supported", lambda: False)
    started = time.monotonic()
    calls = []
    # look_first=False: the first check is skipped, so done() is looked at only after a sleep.
    result = Waiters().wait_until(
        "k", lambda: calls.append(1) or False, timeout=0.1, poll=0.02, look_first=False
    )
    elapsed = time.monotonic() - started
    assert result is False
    assert 0.1 <= elapsed < 1.0
    assert 1 <= len(calls) <= 6


def test_without_wake_ups_a_wait_is_a_short_sleep(monkeypatch):
    monkeypatch.setattr(notify, "supported", lambda: False)
    monkeypatch.setattr(notify, "Listener", StubListener)
    waiters = Waiters()

    async def main():
        with waiters.watching("k") as wake:
            started = time.monotonic()
            await wake.wait(10.0)
            return time.monotonic() - started

    assert asyncio.run(main()) < 0.5  # at most 0.02 s, whatever timeout says
    assert waiters.events == {}


# --- the log watcher -------------------------------------------------------------------------


def test_ours_finds_our_files_among_several_events(tmp_path):
    watcher = WalWatcher(str(tmp_path / "db.sqlite3"), lambda _: None)
    assert watcher.names == {b"db.sqlite3", b"db.sqlite3-wal"}
    assert watcher._ours(event(b"other", 3) + event(b"db.sqlite3-wal", 2)) is True
    assert watcher._ours(event(b"db.sqlite3", 4)) is True
    assert watcher._ours(event(b"db.sqlite3-shm", 2) + event(b"x")) is False
    assert watcher._ours(event(b"")) is False  # an event on the directory itself
    assert watcher._ours(b"") is False
    assert watcher._ours(event(b"db.sqlite3")[: _EVENT.size - 1]) is False  # a torn record
    # A name cut short by a truncated read is not ours either.
    assert watcher._ours(event(b"db.sqlite3-wal")[:-7]) is False


def test_watcher_without_inotify_instances_logs_and_ends(monkeypatch, caplog, tmp_path):
    class NoInotify:
        def inotify_init1(self, flags):
            ctypes.set_errno(24)  # EMFILE: the per-user instance limit
            return -1

    monkeypatch.setattr(notify, "_libc", NoInotify)
    calls = []
    watcher = WalWatcher(str(tmp_path / "db.sqlite3"), calls.append)
    with caplog.at_level(logging.WARNING, logger="executions.notify"):
        watcher._run()
    assert calls == []
    assert "inotify unavailable (Too many open files): SQLite waiters poll" in caplog.text


def inotify_fds() -> int:
    return sum(
        os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
        for fd in os.listdir("/proc/self/fd")
        if os.path.exists(f"/proc/self/fd/{fd}")
    )


def test_watcher_of_a_missing_directory_logs_closes_and_ends(caplog, tmp_path):
    calls = []
    watcher = WalWatcher(str(tmp_path / "gone" / "db.sqlite3"), calls.append)
    before = inotify_fds()
    with caplog.at_level(logging.WARNING, logger="executions.notify"):
        watcher._run()
    assert calls == []  # no "look" without a watch
    assert f"cannot watch {tmp_path / 'gone'}: SQLite waiters poll" in caplog.text
    assert inotify_fds() == before  # the inotify descriptor is not leaked


def test_watcher_wakes_on_our_files_only(tmp_path):
    woken = threading.Event()
    calls = []

    def callback(payload):
        calls.append(payload)
        woken.set()

    watcher = WalWatcher(str(tmp_path / "db.sqlite3"), callback).start()
    try:
        assert woken.wait(5)  # the first look, once the watch is set
        assert calls == [""]
        woken.clear()
        (tmp_path / "unrelated.txt").write_text("x")
        assert not woken.wait(0.6)
        (tmp_path / "db.sqlite3-wal").write_bytes(b"frame")
        assert woken.wait(5)
        assert calls[1] == ""
    finally:
        watcher.stop()
    assert not watcher.thread.is_alive()


def test_watcher_rides_out_a_spurious_wakeup(monkeypatch, tmp_path):
    """select says readable but the read would block (another reader won): it goes on."""
    reads = []
    real_read = os.read

    def read(fd, n):
        reads.append(fd)
        if len(reads) == 1:
            raise BlockingIOError
        return real_read(fd, n)

    monkeypatch.setattr(notify.os, "read", read)
    woken = threading.Event()
    calls = []
    watcher = WalWatcher(
        str(tmp_path / "db.sqlite3"), lambda p: (calls.append(p), woken.set())
    ).start()
    try:
        assert woken.wait(5)
        woken.clear()
        (tmp_path / "db.sqlite3").write_bytes(b"1")
        time.sleep(0.3)
        (tmp_path / "db.sqlite3").write_bytes(b"2")
        assert woken.wait(5)
        assert len(reads) >= 2 and len(calls) >= 2
    finally:
        watcher.stop()


def test_the_thread_base_has_no_body():
    with pytest.raises(NotImplementedError):
        _Thread()._run()


# --- the PostgreSQL listener -----------------------------------------------------------------


class FakeNote:
    def __init__(self, payload):
        self.payload = payload


class FakeConnection:
    def __init__(self, notes):
        self.executed = []
        self.notes = list(notes)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql):
        self.executed.append(sql)

    def notifies(self, timeout):
        notes, self.notes = self.notes, []
        if not notes:
            time.sleep(timeout)
        return iter(notes)


def test_listener_reconnects_after_a_failed_connect(monkeypatch, caplog):
    attempts = []
    conn = FakeConnection([FakeNote("42")])
    got = []
    delivered = threading.Event()

    def connect():
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise OSError("connection refused")
        return conn

    def callback(payload):
        got.append(payload)
        if payload == "42":
            delivered.set()

    listener = PgListener("chan", callback)
    assert listener.name == "listen-chan" and listener.thread.name == "listen-chan"
    monkeypatch.setattr(listener, "_connect", connect)
    with caplog.at_level(logging.WARNING, logger="executions.notify"):
        listener.start()
        try:
            assert delivered.wait(5)
        finally:
            listener.stop()
    assert not listener.thread.is_alive()
    assert len(attempts) == 2
    assert attempts[1] - attempts[0] >= 0.9  # it waits a second before trying again
    assert conn.executed == ['LISTEN "chan"']
    assert got == ["", "42"]  # a look on (re)connecting, then the payload
    assert "LISTEN chan lost its connection; retrying" in caplog.text


def test_listener_stopped_while_waiting_to_retry_ends_at_once(monkeypatch):
    listener = PgListener("chan", lambda _: None)

    def connect():
        listener.stopped.set()
        raise OSError("down")

    monkeypatch.setattr(listener, "_connect", connect)
    started = time.monotonic()
    listener._run()
    assert time.monotonic() - started < 0.5


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_listener_recovers_on_the_real_database(monkeypatch):
    """The first connection is refused; the second LISTENs and gets a real NOTIFY."""
    got = []
    arrived = threading.Event()
    real_connect = PgListener._connect
    attempts = []

    def connect(self):
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("the database restarted")
        return real_connect(self)

    def callback(payload):
        got.append(payload)
        if payload == "hello":
            arrived.set()

    monkeypatch.setattr(PgListener, "_connect", connect)
    listener = PgListener("integr8s_paths_test", callback).start()
    try:
        deadline = time.monotonic() + 10
        while "" not in got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "" in got, "the listener never reconnected"
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify('integr8s_paths_test', 'hello')")
        assert arrived.wait(5)
    finally:
        listener.stop()
    assert len(attempts) == 2


# --- waiters ---------------------------------------------------------------------------------


def test_wake_on_a_closed_loop_is_ignored():
    loop = asyncio.new_event_loop()
    wake = _Wake(loop)
    loop.close()
    wake.set()  # the waiter's loop is gone: nothing to resolve, nothing raised
    assert not wake.future.done()


def test_wake_resolves_the_future_once_on_its_loop():
    async def main():
        wake = _Wake(asyncio.get_running_loop())
        threading.Thread(target=lambda: (wake.set(), wake.set())).start()
        await asyncio.wait_for(wake.future, 5)
        return wake.future

    assert asyncio.run(main()).result() is None


def test_an_empty_payload_wakes_every_waiter_a_named_one_only_its_own():
    waiters = Waiters()
    a1, a2, b = threading.Event(), threading.Event(), threading.Event()
    waiters.events = {"a": {a1, a2}, "b": {b}}
    waiters._wake("b")
    assert (a1.is_set(), a2.is_set(), b.is_set()) == (False, False, True)
    b.clear()
    waiters._wake("nobody")
    assert not any(e.is_set() for e in (a1, a2, b))
    waiters._wake("")
    assert all(e.is_set() for e in (a1, a2, b))


class StubListener:
    def __init__(self, channel, callback):
        self.channel, self.callback, self.stopped = channel, callback, False

    def start(self):
        return self

    def stop(self):
        self.stopped = True


def test_a_wait_is_woken_and_the_watch_forgets_its_waiter(monkeypatch):
    monkeypatch.setattr(notify, "supported", lambda: True)
    monkeypatch.setattr(notify, "Listener", StubListener)
    waiters = Waiters()

    async def main():
        with waiters.watching("run-1") as wake:
            task = asyncio.create_task(wake.wait(5.0))
            await asyncio.sleep(0.01)
            started = time.monotonic()
            threading.Thread(target=waiters.listener.callback, args=("run-1",)).start()
            await task
            return time.monotonic() - started

    assert asyncio.run(main()) < 0.4  # woken, not timed out (RECHECK_S)
    assert waiters.listener.channel == notify.FINISHED
    assert waiters.events == {}
    listener = waiters.listener
    waiters.close()
    assert listener.stopped and waiters.listener is None


def test_a_wait_times_out_at_recheck(monkeypatch):
    monkeypatch.setattr(notify, "supported", lambda: True)
    monkeypatch.setattr(notify, "Listener", StubListener)
    monkeypatch.setattr(notify, "RECHECK_S", 0.05)
    waiters = Waiters()

    async def main():
        with waiters.watching("run-1") as wake:
            started = time.monotonic()
            await wake.wait(60.0)
            return time.monotonic() - started

    assert 0.05 <= asyncio.run(main()) < 1.0
    assert waiters.events == {}


def test_an_announcement_between_a_look_and_the_wait_is_not_lost(monkeypatch):
    """The run ends just after the waiter looked (still running) and before it waits: the
    wait returns at once. Registered only for the wait, the waiter slept until its next
    re-check (RECHECK_S, 0.5 s): wait=true's p95 was 550 ms on SQLite."""
    monkeypatch.setattr(notify, "supported", lambda: True)
    monkeypatch.setattr(notify, "Listener", StubListener)
    waiters = Waiters()

    async def main():
        with waiters.watching("run-1") as wake:
            await asyncio.sleep(0)  # a look at the row: still running
            waiters.listener.callback("run-1")  # the run ends, from the listener's thread
            await asyncio.sleep(0.01)
            started = time.monotonic()
            await wake.wait(5.0)
            first = time.monotonic() - started
            started = time.monotonic()
            await wake.wait(0.05)  # that announcement is used up: the next wait waits
            return first, time.monotonic() - started

    first, second = asyncio.run(main())
    assert first < 0.1 and second >= 0.04

"""Wake-ups without a broker: the PostgreSQL trigger and LISTEN, inotify on SQLite's log."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connection

from executions import notify
from executions.models import Execution
from tests.conftest import database_url

ROOT = Path(__file__).resolve().parent.parent

needs_postgresql = pytest.mark.skipif(
    "connection.vendor != 'postgresql'",
    reason="LISTEN/NOTIFY is PostgreSQL's (SQLite has its log watcher)",
)


def listen(*channels):
    import psycopg

    params = connection.get_connection_params()
    for key in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(key, None)
    conn = psycopg.connect(**params, autocommit=True)
    for channel in channels:
        conn.execute(f'LISTEN "{channel}"')
    return conn


def received(conn, count, timeout=5.0):
    got = []
    for note in conn.notifies(timeout=timeout, stop_after=count):
        got.append((note.channel, note.payload))
    return got


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_the_trigger_announces_queued_and_finished_runs():
    conn = listen(notify.QUEUED, notify.FINISHED)
    try:
        execution = Execution.objects.submit("print(1)")
        assert received(conn, 1) == [(notify.QUEUED, str(execution.execution_id))]

        Execution.objects.claim("w", 10)  # queued -> running: nobody needs waking
        execution.cancel()  # running: only flagged
        Execution.objects.filter(pk=execution.pk).update(status="completed")
        assert received(conn, 1) == [(notify.FINISHED, str(execution.execution_id))]
    finally:
        conn.close()


@pytest.mark.django_db(transaction=True)
def test_a_waiter_is_woken_by_the_notification(monkeypatch):
    # With the safety re-check pushed past the timeout, only the wake-up (NOTIFY on
    # PostgreSQL, the write-ahead log's inotify event on SQLite) can end the wait.
    assert notify.supported()
    monkeypatch.setattr(notify, "RECHECK_S", 60)
    execution = Execution.objects.submit("print(1)")
    Execution.objects.claim("w", 10)
    calls = []

    def finish_soon():
        time.sleep(0.2)
        Execution.objects.filter(pk=execution.pk).update(status="completed")
        connection.close()  # this thread's own connection

    def done():
        calls.append(1)
        return Execution.objects.get(pk=execution.pk).status == "completed"

    ended = threading.Thread(target=finish_soon)
    ended.start()
    woke = notify.waiters.wait_until(str(execution.execution_id), done, timeout=20)
    ended.join()

    assert woke
    assert len(calls) >= 2  # looked once before waiting, then again when woken


@pytest.mark.django_db(transaction=True)
def test_waiting_gives_up_at_its_timeout():
    execution = Execution.objects.submit("print(1)")
    started = time.monotonic()

    assert not notify.waiters.wait_until(
        str(execution.execution_id), lambda: False, timeout=0.3, poll=0.05
    )
    assert 0.25 < time.monotonic() - started < 2


@pytest.mark.skipif("connection.vendor != 'sqlite'", reason="the SQLite watcher")
@pytest.mark.django_db(transaction=True)
def test_a_commit_in_another_process_wakes_the_sqlite_watcher():
    woken = threading.Event()
    watcher = notify.Listener(notify.QUEUED, lambda _: woken.set()).start()
    try:
        time.sleep(0.1)
        woken.clear()  # the watcher's own first call
        env = {**os.environ, "DATABASE_URL": database_url()}
        code = (
            "import django; django.setup()\n"
            "from executions.models import Execution; Execution.objects.submit('print(1)')"
        )
        subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT)
        assert woken.wait(10), "no wake-up from the other process's commit"
    finally:
        watcher.stop()

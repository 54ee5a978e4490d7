"""Wake-ups between web and worker processes without a broker.

On PostgreSQL, LISTEN/NOTIFY: a trigger on the executions table (migration 0004) notifies
"queued" when a run is queued and "finished" when it ends, as the write commits, so neither
the worker nor a waiting request waits for a poll tick.
On SQLite there is no such channel and both sides fall back to a short indexed poll.
The database stays the single source of truth: a notification only says "look now".
"""

import logging
import threading
import time

from django.db import connection

log = logging.getLogger(__name__)

RECHECK_S = 0.5  # a waiter looks again this often even without a wake-up (a lost NOTIFY)
QUEUED = "integr8s_queued"
FINISHED = "integr8s_finished"


def supported() -> bool:
    return connection.vendor == "postgresql"


class Listener:
    """A background thread on its own connection that LISTENs and calls back per payload."""

    def __init__(self, channel: str, callback):
        self.channel = channel
        self.callback = callback
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"listen-{channel}", daemon=True)

    def start(self) -> "Listener":
        self.thread.start()
        return self

    def stop(self, timeout: float = 3.0) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join(timeout)

    def _connect(self):
        import psycopg

        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params.pop("prepare_threshold", None)
        return psycopg.connect(**params, autocommit=True)

    def _run(self):
        while not self.stopped.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f'LISTEN "{self.channel}"')
                    # A notification may have been missed while (re)connecting: look once.
                    self.callback("")
                    while not self.stopped.is_set():
                        for note in conn.notifies(timeout=0.25):
                            self.callback(note.payload)
            except Exception:
                log.warning("LISTEN %s lost its connection; retrying", self.channel, exc_info=True)
                self.stopped.wait(1.0)


class Waiters:
    """Threads waiting for particular executions to finish, woken by one shared Listener."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events: dict[str, set[threading.Event]] = {}
        self.listener = None

    def _wake(self, payload: str):
        with self.lock:
            targets = (
                self.events.get(payload, set()) if payload else set().union(*self.events.values())
            )
            for event in targets:
                event.set()

    def wait_until(
        self, key: str, done, timeout: float, poll: float = 0.02, look_first: bool = True
    ) -> bool:
        """Block until done() is true (checked on each wake-up) or timeout; return done().

        The event is registered before the first check, so a notification sent between the
        check and the wait is not lost. look_first=False skips that first check for a run
        queued a moment ago, which cannot have ended yet (if it somehow has, the periodic
        re-check finds it). Without LISTEN/NOTIFY this is a plain short poll.
        """
        deadline = time.monotonic() + timeout
        skip = not look_first
        if not supported():
            while skip or not done():
                skip = False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                time.sleep(min(poll, remaining))
            return True
        event = threading.Event()
        with self.lock:
            if self.listener is None:
                self.listener = Listener(FINISHED, self._wake).start()
            self.events.setdefault(key, set()).add(event)
        try:
            while skip or not done():
                skip = False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                # Re-check now and then even without a wake-up: the listener may be reconnecting.
                event.wait(min(remaining, RECHECK_S))
                event.clear()
            return True
        finally:
            with self.lock:
                self.events[key].discard(event)
                if not self.events[key]:
                    del self.events[key]

    def close(self) -> None:
        """Stop the shared listener (tests, before their database is dropped)."""
        with self.lock:
            listener, self.listener = self.listener, None
        if listener:
            listener.stop()


waiters = Waiters()

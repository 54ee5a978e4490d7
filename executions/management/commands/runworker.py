"""Claim queued executions from the database and run each in the configured sandbox.

The loop is built from small steps that each return whether they found work:
claim (conditional UPDATE), heartbeat (extend leases, pass on cancel requests) and recover
(requeue runs whose worker vanished). Any number of workers may share one database.
"""

import logging
import mimetypes
import os
import signal
import socket
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import import_module
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.utils import timezone

from executions import metrics, notify, runtimes
from executions.models import Execution, InputLine, OutputChunk, OutputFile, Worker
from executions.sandbox import get_backend
from executions.sandbox.classify import platform_failure
from executions.sandbox.contract import CANCELLED, Reservation, RunResult, RunSpec

log = logging.getLogger("integr8s.worker")

HEARTBEAT_S = 0.25  # how often leases are extended and cancel requests passed on
RECOVER_S = 2.0  # how often expired leases are looked for
TIDY_S = 3600.0  # how often expired sessions are deleted
FLUSH_S = 0.1  # live output reaches watchers within this
FLUSH_BYTES = 16384
LISTENING_POLL_S = 1.0  # how often an idle worker that gets wake-ups looks anyway


class LiveRun:
    """The worker's side of a run's Events: what it prints goes to OutputChunk rows in small
    batches (every FLUSH_S, or FLUSH_BYTES, whichever first: a few writes a second however a
    script prints), and input the heartbeat fetched goes to the script. Live output is a view
    for watchers; the result written at the end is the truth, so a failed write is dropped."""

    def __init__(self, execution: Execution):
        self.execution = execution
        self.pending: list[list[str]] = []  # [stream, text], consecutive streams merged
        self.size = 0
        self.seq = 0
        self.flushed_at = time.monotonic()
        self.inputs: deque[bytes] = deque()
        self.lock = threading.Lock()

    def output(self, stream: str, text: str) -> None:
        if self.pending and self.pending[-1][0] == stream:
            self.pending[-1][1] += text
        else:
            self.pending.append([stream, text])
        self.size += len(text)
        if self.size >= FLUSH_BYTES:
            self.flush()

    def poll(self) -> bytes | None:
        if self.pending and time.monotonic() - self.flushed_at >= FLUSH_S:
            self.flush()
        with self.lock:
            return self.inputs.popleft() if self.inputs else None

    def waiting_for_input(self, waiting: bool) -> None:
        """Said on the row, for the page's input line; what it printed before it asked (a
        prompt) is flushed first, so the line never shows before its prompt."""
        if self.pending:
            self.flush()
        # Only while the run is still this claim's (as finish()): once its lease ran out and
        # it was claimed again, this sandbox's script is not the one the row shows.
        ours = Execution.objects.running().filter(
            pk=self.execution.pk, worker=self.execution.worker, attempts=self.execution.attempts
        )
        try:
            ours.update(awaiting_input=waiting)
        except DatabaseError:
            log.warning("run %s: input state not said", self.execution.execution_id, exc_info=True)

    def give(self, data: bytes) -> None:
        with self.lock:
            self.inputs.append(data)

    def flush(self) -> None:
        rows = [
            OutputChunk(execution_id=self.execution.pk, seq=self.seq + i, stream=stream, text=text)
            for i, (stream, text) in enumerate(self.pending, start=1)
        ]
        self.pending, self.size, self.flushed_at = [], 0, time.monotonic()
        try:
            OutputChunk.objects.bulk_create(rows)
            self.seq += len(rows)
        except DatabaseError:
            log.warning("run %s: live output dropped", self.execution.execution_id, exc_info=True)


@dataclass
class InFlight:
    execution: Execution
    room: Reservation  # the backend's room for it (a host slot), given back when it ends
    cancel: threading.Event = field(default_factory=threading.Event)
    future: Future[None] | None = None  # set as soon as the run is handed to the pool
    live: LiveRun | None = None

    def __post_init__(self) -> None:
        self.live = LiveRun(self.execution)


class Command(BaseCommand):
    help = "Run queued executions in sandboxes (the worker process)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--concurrency",
            type=int,
            default=settings.WORKER_CONCURRENCY,
            help="How many runs at once (default: WORKER_CONCURRENCY).",
        )
        parser.add_argument(
            "--once",
            action="store_true",
            help="Run what is queued now, wait for it to finish, then exit.",
        )
        parser.add_argument("--name", default="", help="Worker name (default: host:pid:random).")
        parser.add_argument(
            "--metrics-port", type=int, default=0, help="Serve Prometheus metrics on this port."
        )
        parser.add_argument(
            "--metrics-addr", default="127.0.0.1", help="Address for --metrics-port."
        )
        parser.add_argument(
            "--backend",
            choices=["local", "kubernetes"],
            default=None,
            help="Override EXECUTION_BACKEND.",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shutdown = threading.Event()  # set by SIGTERM/SIGINT, or by a test
        self.wakeup = threading.Event()

    def handle(self, *args: Any, **options: Any) -> None:
        self.concurrency = max(1, options["concurrency"])
        self.once = options["once"]
        self.name = options["name"] or (
            f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        )
        self.backend = get_backend(options["backend"])
        self.lease_s = settings.WORKER_LEASE_S
        self.in_flight: dict[int, InFlight] = {}
        self.lock = threading.Lock()
        self.next_heartbeat = self.next_recover = self.next_tidy = 0.0
        self.host_full = False  # the last claim step found runs queued but no host slot free

        if options["metrics_port"]:
            from prometheus_client import start_http_server

            # Loopback unless told otherwise: metrics are for the operator's Prometheus. A port
            # another process holds costs the metrics, not the runs.
            try:
                start_http_server(options["metrics_port"], addr=options["metrics_addr"])
            except OSError as exc:
                log.error(
                    "worker metrics not served on %s:%s (%s); running without them",
                    options["metrics_addr"],
                    options["metrics_port"],
                    exc,
                )
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.on_signal)
            signal.signal(signal.SIGINT, self.on_signal)

        self.register()
        self.reap()
        # Woken when a run is queued, and when one ends (its host slot may be the one this
        # worker waits for); on SQLite one watcher sees both.
        self.listeners = []
        if notify.supported() and not self.once:
            channels = [notify.QUEUED] + ([notify.FINISHED] if notify.sqlite_file() is None else [])
            self.listeners = [
                notify.Listener(channel, lambda _: self.wakeup.set()).start()
                for channel in channels
            ]
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="run")
        log.info(
            "worker %s started: backend=%s concurrency=%d",
            self.name,
            self.backend.name,
            self.concurrency,
        )
        try:
            self.loop()
        finally:
            self.drain()
            for listener in self.listeners:
                listener.stop()
            Worker.objects.filter(name=self.name).update(stopped_at=timezone.now(), in_flight=0)
            connection.close()
            log.info("worker %s stopped", self.name)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.shutdown.is_set():
            # A second signal: stop waiting for in-flight runs.
            for job in list(self.in_flight.values()):
                job.cancel.set()
        self.shutdown.set()
        self.wakeup.set()

    def loop(self) -> None:
        # With wake-ups, looking again now and then is only a safety net (a lost notification).
        poll = LISTENING_POLL_S if self.listeners else settings.WORKER_POLL_S
        while not self.shutdown.is_set():
            found = self.handle_one()
            self.maybe_heartbeat()
            self.maybe_recover()
            self.maybe_tidy()
            if self.once and not found and not self.in_flight and not self.host_full:
                return
            if not found:
                self.wakeup.wait(poll if not self.in_flight else min(poll, HEARTBEAT_S))
                self.wakeup.clear()

    # --- steps -----------------------------------------------------------------------------

    def handle_one(self) -> bool:
        """Claim and start as many runs as this worker has threads free and the host has room
        for (the backend's slots: one per core on a local host); True if any was claimed."""
        claimed = 0
        self.host_full = False
        while len(self.in_flight) < self.concurrency:
            if Execution.objects.next_fair() is None:
                break  # nothing queued (most wake-ups): no host slot taken and given back
            room = self.backend.reserve()
            if room is None:
                # The host is full: the run stays queued for whoever has room first (with
                # --once, this worker waits for room rather than leave what is queued).
                self.host_full = Execution.objects.queued().exists()
                break
            try:
                found = Execution.objects.claim(self.name, self.lease_s, limit=1)
            except BaseException:
                room.release()
                raise
            if not found:
                room.release()
                break
            execution = found[0]
            job = InFlight(execution, room)
            with self.lock:
                self.in_flight[execution.pk] = job
            job.future = self.pool.submit(self.run, job)
            claimed += 1
            if execution.created_at and execution.started_at:  # claim() set started_at
                wait_s = (execution.started_at - execution.created_at).total_seconds()
                metrics.QUEUE_WAIT.observe(max(0.0, wait_s))
        metrics.IN_FLIGHT.set(len(self.in_flight))
        return bool(claimed)

    def maybe_heartbeat(self) -> None:
        now = time.monotonic()
        if now < self.next_heartbeat:
            return
        self.next_heartbeat = now + HEARTBEAT_S
        # Drop a broken or too old connection here, not on every pass: each call makes the
        # next query check the connection first, an extra round trip.
        close_old_connections()
        self.heartbeat()

    def heartbeat(self) -> None:
        """Extend our leases, and cancel runs whose owner asked or that are no longer ours."""
        ids = list(self.in_flight)
        if ids:
            ours = Execution.objects.filter(
                pk__in=ids, status=Execution.Status.RUNNING, worker=self.name
            )
            ours.update(lease_expires_at=timezone.now() + timedelta(seconds=self.lease_s))
            keep = set(ours.filter(cancel_requested=False).values_list("pk", flat=True))
            self.hand_over_input(
                [pk for pk in ids if (j := self.in_flight.get(pk)) and j.execution.interactive]
            )
            for pk in ids:
                job = self.in_flight.get(pk)
                if job and pk not in keep and not job.cancel.is_set():
                    log.info("cancelling %s", job.execution.execution_id)
                    job.cancel.set()
        Worker.objects.filter(name=self.name).update(
            seen_at=timezone.now(), in_flight=len(self.in_flight)
        )

    def hand_over_input(self, ids: list[int]) -> None:
        """Input sent to our interactive runs goes to their sandboxes, in order, once."""
        if not ids:
            return
        lines = list(InputLine.objects.filter(execution_id__in=ids, taken=False).order_by("id"))
        if not lines:
            return
        InputLine.objects.filter(pk__in=[line.pk for line in lines]).update(taken=True)
        for line in lines:
            job = self.in_flight.get(line.execution_id)
            if job is not None and job.live is not None:
                job.live.give(b"" if line.eof else line.text.encode("utf-8", "surrogatepass"))

    def maybe_recover(self) -> None:
        now = time.monotonic()
        if now < self.next_recover:
            return
        self.next_recover = now + RECOVER_S
        self.recover()

    def maybe_tidy(self) -> None:
        now = time.monotonic()
        if now < self.next_tidy:
            return
        self.next_tidy = now + TIDY_S
        self.tidy()

    @staticmethod
    def tidy() -> None:
        """Delete expired sessions. Every anonymous caller that sends no cookie back (an API
        client, a script with curl) is given one with its first run, and Django never deletes
        them itself: the table only grew. Any worker may do it; two doing it is harmless."""
        engine = import_module(settings.SESSION_ENGINE)
        try:
            engine.SessionStore.clear_expired()
        except (DatabaseError, NotImplementedError):  # the database is away; a cookie store
            log.warning("expired sessions not deleted this time", exc_info=True)

    def recover(self) -> int:
        requeued, failed = Execution.objects.recover_expired(settings.WORKER_MAX_ATTEMPTS)
        if requeued or failed:
            log.warning("recovered lost runs: %d requeued, %d failed", requeued, failed)
            metrics.RECOVERED.labels(outcome="requeued").inc(requeued)
            metrics.RECOVERED.labels(outcome="failed").inc(failed)
        return requeued + failed

    # --- one run, in a pool thread ---------------------------------------------------------

    def run(self, job: InFlight) -> None:
        execution = job.execution
        try:
            result = self.sandbox(execution, job.cancel, job.live)
            if result.status == CANCELLED:
                asked = Execution.objects.filter(pk=execution.pk).values_list("reason", flat=True)
                result.reason = next(iter(asked), "") or (
                    "Stopped because the worker running it was shut down."
                )
            self.store(execution, result, job.live)
        except Exception:
            # The database went away for good: the lease expires and recovery re-runs it.
            log.exception("run %s could not be recorded", execution.execution_id)
            connection.close()  # the thread's next run connects afresh
        finally:
            # This thread keeps its connection for its next run otherwise: a new PostgreSQL
            # connection costs a backend process, a health check a round trip.
            with self.lock:
                self.in_flight.pop(execution.pk, None)
            job.room.release()
            metrics.IN_FLIGHT.set(len(self.in_flight))
            self.wakeup.set()

    def store(self, execution: Execution, result: RunResult, live: LiveRun | None = None) -> None:
        """Write the result. If the database refuses it (whatever the reason), the run still
        ends, once, as a platform failure that says so: it is not left running to be
        recovered and run a second time."""
        try:
            # The end and the output files in one commit: whoever sees the run end (a wait, the
            # events stream, the page) sees its files too. Stored after it, a wait=true answer
            # listed no files for any file that took a moment to write.
            with transaction.atomic():
                stored = execution.finish(result, worker=self.name)
                if stored:
                    self.keep_files(execution, result)
        except DatabaseError as exc:
            log.exception("run %s: the database refused its result", execution.execution_id)
            connection.close()
            result = RunResult(
                status=Execution.Status.FAILED,
                error_type=Execution.ErrorType.SYSTEM_ERROR,
                reason=(
                    "The script ran, but its result could not be stored "
                    f"({type(exc).__name__}). This is the platform's fault, not the script's."
                ),
                exit_code=result.exit_code,
                wall_time_ms=result.wall_time_ms,
                cpu_time_ms=result.cpu_time_ms,
                peak_memory_kb=result.peak_memory_kb,
                python_version=result.python_version,
            )
            stored = execution.finish(result, worker=self.name)
        if stored:
            # The result holds all of it now: the live view's rows go (a run that printed
            # too little, too fast, to be flushed wrote none: most runs, spared a write).
            if live is None or live.seq or execution.attempts > 1:
                OutputChunk.objects.filter(execution_id=execution.pk).delete()
            self.record(execution, result)
        else:
            log.warning("result for %s dropped: no longer ours", execution.execution_id)

    @staticmethod
    def keep_files(execution: Execution, result: RunResult) -> None:
        """The run's output files, through the storage API; one that cannot be stored is
        left out and logged (the result says what the run did either way)."""
        for number, (name, data) in enumerate(result.files, start=1):
            content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
            try:
                with transaction.atomic():  # a savepoint: one file refused leaves the rest
                    OutputFile.objects.create(
                        execution=execution,
                        name=name,
                        size=len(data),
                        content_type=content_type,
                        file=ContentFile(data, name=name),
                    )
            except (DatabaseError, OSError) as exc:
                # By its number, not its name: the script chose the name, and the log keeps
                # nothing a script wrote.
                log.error(
                    "run %s: output file %d (%d bytes) not kept: %s",
                    execution.execution_id,
                    number,
                    len(data),
                    type(exc).__name__,
                )

    def sandbox(
        self, execution: Execution, cancel: threading.Event, live: LiveRun | None = None
    ) -> RunResult:
        try:
            runtime = runtimes.get(execution.python_version, self.backend.name)
        except runtimes.UnknownVersion as exc:
            return RunResult(
                status=Execution.Status.FAILED,
                error_type=Execution.ErrorType.SYSTEM_ERROR,
                reason=str(exc),
                python_version=execution.python_version,
            )
        spec = RunSpec(
            script=execution.script,
            stdin=execution.stdin,
            runtime=runtime,
            limits=execution.run_limits,
            run_id=str(execution.execution_id),
            interactive=execution.interactive,
            files=execution.input_files_content(),
        )
        log.info("run %s start python=%s", spec.run_id, runtime.version)
        try:
            result = self.backend.run(spec, cancel, live)
        except Exception as exc:
            log.exception("run %s: backend failed", spec.run_id)
            return platform_failure(spec, f"The sandbox failed to run this script ({exc}).")
        log.info(
            "run %s end status=%s error_type=%s wall_ms=%s",
            spec.run_id,
            result.status,
            result.error_type,
            result.wall_time_ms,
        )
        return result

    def record(self, execution: Execution, result: RunResult) -> None:
        metrics.FINISHED.labels(
            status=result.status,
            error_type=result.error_type or "",
            python_version=execution.python_version,
        ).inc()
        if result.wall_time_ms is not None:
            metrics.RUN_DURATION.labels(backend=self.backend.name).observe(
                result.wall_time_ms / 1000
            )
        metrics.observe_usage(self.backend.name, result.cpu_time_ms, result.peak_memory_kb)
        start = result.extra.get("start_seconds")
        if start is not None:
            metrics.SANDBOX_START.labels(backend=self.backend.name).observe(start)

    # --- start and stop --------------------------------------------------------------------

    def register(self) -> None:
        Worker.objects.update_or_create(
            name=self.name,
            defaults=dict(
                backend=self.backend.name,
                concurrency=self.concurrency,
                started_at=timezone.now(),
                seen_at=timezone.now(),
                stopped_at=None,
            ),
        )

    def reap(self) -> None:
        """Remove sandboxes an earlier crash left behind, sparing runs other workers hold."""
        live = Execution.objects.running().filter(lease_expires_at__gte=timezone.now())
        live_ids = {str(u) for u in live.values_list("execution_id", flat=True)}
        try:
            removed = self.backend.cleanup_stale(live_ids)
        except Exception:
            log.exception("cleaning up stale sandboxes failed")
            return
        if removed:
            log.warning("removed %d sandboxes left behind by an earlier worker", removed)

    def drain(self) -> None:
        """Stop claiming; let in-flight runs finish (they are bounded by their wall time).

        Leases keep being extended and cancel requests passed on while we wait; runs still
        going after the bound (or after a second signal) are cancelled.
        """
        jobs = list(self.in_flight.values())
        # Every job has its future: handle_one() runs on this thread and sets it at once.
        futures = [j.future for j in jobs if j.future is not None]
        if jobs:
            log.info("waiting for %d runs to finish", len(jobs))
            deadline = time.monotonic() + max(j.execution.run_limits.wall_time_s for j in jobs)
            deadline += 10
            while self.in_flight and time.monotonic() < deadline:
                self.heartbeat()
                wait(futures, timeout=HEARTBEAT_S)
            for job in jobs:
                job.cancel.set()
            wait(futures, timeout=10)
        self.close_pool_connections()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def close_pool_connections(self) -> None:
        """Close each pool thread's database connection (they are thread-local).

        One task per thread, held at a barrier until all are running, so each lands on a
        different thread.
        """
        barrier = threading.Barrier(self.concurrency)

        def close() -> None:
            try:
                barrier.wait(timeout=5)
            except threading.BrokenBarrierError:
                pass
            connection.close()

        wait([self.pool.submit(close) for _ in range(self.concurrency)], timeout=10)

"""The worker: claims, runs, cancels, recovers and drains, against the real local sandbox."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import DataError
from django.utils import timezone

from executions.models import Execution, Worker
from tests.conftest import database_url

ROOT = Path(__file__).resolve().parent.parent


def submit(script, **fields):
    return Execution.objects.submit(script, **fields)


def wait_for(execution, statuses, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        execution.refresh_from_db()
        if execution.status in statuses:
            return execution
        time.sleep(0.05)
    raise AssertionError(f"{execution} did not reach {statuses} in {timeout}s")


def wait_for_attempt(execution, attempt, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        execution.refresh_from_db()
        if execution.status == "running" and execution.attempts == attempt:
            return
        time.sleep(0.05)
    raise AssertionError(f"{execution} never started attempt {attempt}")


def start_worker(*args, env=None):
    """A runworker process on the test database, in its own process group."""
    full_env = {**os.environ, "DATABASE_URL": database_url(), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "manage.py", "runworker", *args],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc, sig=signal.SIGTERM, timeout=30):
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return proc.returncode, out.decode(errors="replace")


def sandbox_processes(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


# --- claiming ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_claims_each_execution_once():
    first, second = submit("print(1)"), submit("print(2)")

    claimed_a = Execution.objects.claim("a", 10, limit=1)
    claimed_b = Execution.objects.claim("b", 10, limit=5)
    nothing = Execution.objects.claim("c", 10, limit=5)

    assert [e.pk for e in claimed_a] == [first.pk]
    row = claimed_a[0]  # the row as the claim returned it, typed like any other
    assert (row.status, row.worker, row.attempts) == ("running", "a", 1)
    assert isinstance(row.limits, dict) and row.limits == first.limits
    assert row.started_at.tzinfo is not None and row.execution_id == first.execution_id
    assert [e.pk for e in claimed_b] == [second.pk]
    assert nothing == []
    first.refresh_from_db()
    assert (first.status, first.worker, first.attempts) == ("running", "a", 1)
    assert first.lease_expires_at > timezone.now()


@pytest.mark.django_db
def test_a_result_is_written_once():
    from executions.sandbox.contract import RunResult

    execution = submit("print(1)")
    [claimed] = Execution.objects.claim("a", 10)

    assert not claimed.finish(RunResult(status="completed", output="x"), worker="someone-else")
    assert claimed.finish(RunResult(status="completed", output="first"), worker="a")
    assert not claimed.finish(RunResult(status="failed", output="late"), worker="a")
    execution.refresh_from_db()
    assert (execution.status, execution.output) == ("completed", "first")


@pytest.mark.django_db
def test_it_requeues_a_lost_run_once_then_fails_it():
    execution = submit("print(1)")
    Execution.objects.claim("gone", 10)
    Execution.objects.filter(pk=execution.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert Execution.objects.recover_expired(max_attempts=2) == (1, 0)
    execution.refresh_from_db()
    assert (execution.status, execution.worker) == ("queued", "")

    Execution.objects.claim("gone-again", 10)
    Execution.objects.filter(pk=execution.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert Execution.objects.recover_expired(max_attempts=2) == (0, 1)
    execution.refresh_from_db()
    assert execution.status == "failed"
    assert execution.error_type == "system_error"
    assert "worker" in execution.reason and "2 times" in execution.reason


@pytest.mark.django_db
def test_a_fresh_lease_is_left_alone():
    execution = submit("print(1)")
    Execution.objects.claim("alive", 10)

    assert Execution.objects.recover_expired(max_attempts=2) == (0, 0)
    execution.refresh_from_db()
    assert execution.status == "running"


@pytest.mark.django_db
def test_cancelling_a_queued_run_ends_it_at_once():
    execution = submit("print(1)")

    assert execution.cancel(by="alice")
    execution.refresh_from_db()
    assert execution.status == "cancelled"
    assert execution.error_type == "cancelled"
    assert execution.finished_at is not None
    assert not execution.cancel()  # already over


@pytest.mark.django_db
def test_retry_queues_a_copy():
    execution = submit("print(1)", stdin="in")
    copy = execution.retry()

    assert copy.pk != execution.pk
    assert (copy.script, copy.stdin, copy.status, copy.retry_of) == (
        "print(1)",
        "in",
        "queued",
        execution,
    )


# --- running, with the real sandbox -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_once_runs_what_is_queued_and_exits():
    ok = submit('print("hello")')
    broken = submit("raise SystemExit(3)")

    call_command("runworker", once=True, stdout=StringIO())

    ok.refresh_from_db()
    broken.refresh_from_db()
    assert (ok.status, ok.output, ok.exit_code, ok.error_type) == ("completed", "hello\n", 0, None)
    assert ok.wall_time_ms is not None and ok.started_at and ok.finished_at
    assert (broken.status, broken.exit_code, broken.error_type) == ("completed", 3, "script_error")
    assert Worker.objects.get().stopped_at is not None


@pytest.mark.django_db(transaction=True)
def test_nul_bytes_in_output_are_stored_and_shown():
    """PostgreSQL's text refuses NUL: it is stored as the symbol for NUL, on every database."""
    execution = submit("import sys\nprint('a\\x00b')\nsys.stderr.write('c\\x00d')")

    call_command("runworker", once=True, stdout=StringIO())

    execution.refresh_from_db()
    assert (execution.status, execution.error_type) == ("completed", None), execution.reason
    assert (execution.output, execution.errors) == ("a\u2400b\n", "c\u2400d")


@pytest.mark.django_db(transaction=True)
def test_a_result_the_database_refuses_fails_the_run_once(monkeypatch):
    """Whatever makes the result write fail, the run ends with a reason, and is not left
    running for recovery to run a second time."""
    execution = submit("print('ran')")
    real_finish = Execution.finish
    calls = []

    def refuse_first(self, result, worker=None):
        calls.append(result.status)
        if len(calls) == 1:
            raise DataError("value too long for type character varying(20)")
        return real_finish(self, result, worker=worker)

    monkeypatch.setattr(Execution, "finish", refuse_first)
    call_command("runworker", once=True, stdout=StringIO())

    execution.refresh_from_db()
    assert (execution.status, execution.error_type) == ("failed", "system_error")
    assert "could not be stored" in execution.reason and "DataError" in execution.reason
    assert execution.attempts == 1 and calls == ["completed", "failed"]


@pytest.mark.django_db(transaction=True)
def test_an_unknown_version_fails_with_a_reason():
    execution = submit("print(1)")
    Execution.objects.filter(pk=execution.pk).update(python_version="2.0")

    call_command("runworker", once=True, stdout=StringIO())

    execution.refresh_from_db()
    assert (execution.status, execution.error_type) == ("failed", "system_error")
    assert "2.0" in execution.reason and "Available versions" in execution.reason


def test_the_worker_picks_up_and_finishes_runs(worker):
    execution = submit("import sys; print(sys.version_info[:2])")

    wait_for(execution, {"completed"}, timeout=10)
    assert execution.output.startswith("(3, ")
    assert execution.attempts == 1


def test_cancel_kills_a_running_script_quickly(worker):
    marker = "cancel-marker-7431"
    execution = submit(f"import time  # {marker}\nprint('started', flush=True)\ntime.sleep(30)")
    wait_for(execution, {"running"})
    time.sleep(0.3)  # let the sandbox start

    asked = time.monotonic()
    assert execution.cancel(by="its owner")
    wait_for(execution, {"cancelled"}, timeout=5)
    took = time.monotonic() - asked

    assert took < 2.0, f"cancel took {took:.2f}s"
    assert execution.error_type == "cancelled"
    assert "Cancelled by its owner" in execution.reason
    assert sandbox_processes(marker) == []


# --- worker processes: crash recovery, draining ------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_is_recovered_by_another():
    execution = submit("import time\ntime.sleep(1.5)\nprint('done')")
    env = {"WORKER_LEASE_S": "1"}
    first = start_worker(env=env)
    wait_for(execution, {"running"})
    stop(first, signal.SIGKILL)

    second = start_worker(env=env)
    try:
        wait_for(execution, {"completed"}, timeout=20)
    finally:
        stop(second)
    assert execution.output == "done\n"
    assert execution.attempts == 2


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_run_lost_twice_fails_with_a_reason():
    execution = submit("import time\ntime.sleep(30)")
    env = {"WORKER_LEASE_S": "1"}
    for attempt in (1, 2):
        proc = start_worker(env=env)
        wait_for_attempt(execution, attempt)
        stop(proc, signal.SIGKILL)
        time.sleep(1.2)  # let the lease run out
    assert sandbox_processes("time.sleep(30)") == []

    call_command("runworker", once=True, stdout=StringIO())  # recovery happens on start

    execution.refresh_from_db()
    assert (execution.status, execution.error_type) == ("failed", "system_error")
    assert "stopped unexpectedly" in execution.reason


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_sigterm_lets_running_scripts_finish():
    execution = submit("import time\nprint('a', flush=True)\ntime.sleep(1)\nprint('b')")
    proc = start_worker()
    wait_for(execution, {"running"})

    code, log = stop(proc, signal.SIGTERM)

    assert code == 0, log
    execution.refresh_from_db()
    assert (execution.status, execution.output) == ("completed", "a\nb\n")
    assert Worker.objects.get().stopped_at is not None


@pytest.mark.django_db(transaction=True)
def test_runs_never_outnumber_the_host_s_slots(settings):
    """With one slot on the host, a worker with two threads still runs one sandbox at a time:
    the second run waits in the queue (its wall clock not yet started)."""
    from executions.sandbox import get_backend

    settings.SANDBOX_SLOTS = 1
    get_backend.cache_clear()
    try:
        runs = [submit("import time\ntime.sleep(0.6)\nprint('done')") for _ in range(2)]
        call_command("runworker", once=True, concurrency=2, stdout=StringIO())
    finally:
        get_backend.cache_clear()
    first, second = (Execution.objects.get(pk=r.pk) for r in runs)
    assert [first.status, second.status] == ["completed", "completed"]
    assert second.started_at >= first.finished_at or first.started_at >= second.finished_at


@pytest.mark.django_db(transaction=True)
def test_once_waits_for_a_host_slot_rather_than_leave_runs_queued(settings):
    """Another installation on the host (a running site, another test run) holds every slot
    for a moment: `runworker --once` waits for room and runs what is queued; it used to exit
    at once and leave the run queued."""
    import threading

    from executions.sandbox import get_backend

    settings.SANDBOX_SLOTS = 1
    get_backend.cache_clear()
    try:
        held = get_backend().reserve()  # the other holder of the host's only slot
        assert held is not None
        threading.Timer(0.5, held.release).start()
        run = submit('print("after the wait")')
        call_command("runworker", once=True, stdout=StringIO())
    finally:
        get_backend.cache_clear()
    run.refresh_from_db()
    assert (run.status, run.output) == ("completed", "after the wait\n")


# --- live output and input ----------------------------------------------------------------


def wait_until(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.django_db(transaction=True)
def test_output_so_far_is_there_while_it_runs_and_the_result_replaces_it(worker):
    from executions.models import OutputChunk

    execution = submit(
        "import sys, time\nprint('first', flush=True)\nprint('oops', file=sys.stderr)\n"
        "time.sleep(1.5)\nprint('last')"
    )
    wait_until(lambda: Execution.objects.get(pk=execution.pk).live_output()[0] == "first\n")
    running = Execution.objects.get(pk=execution.pk)
    assert running.status == "running"
    assert running.live_output() == ("first\n", "oops\n")
    seqs = list(OutputChunk.objects.filter(execution=running).values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))  # the events stream's ids, in order
    done = wait_for(execution, {"completed"})
    assert done.live_output() == ("first\nlast\n", "oops\n")
    assert not OutputChunk.objects.filter(execution=done).exists()


@pytest.mark.django_db(transaction=True)
def test_input_sent_while_it_runs_reaches_an_interactive_script(worker):
    from executions.models import InputLine

    execution = submit(
        "name = input('name? ')\nprint('hello', name)\nimport sys\nprint(repr(sys.stdin.read()))",
        interactive=True,
    )
    wait_until(lambda: "name? " in Execution.objects.get(pk=execution.pk).live_output()[0])
    InputLine.objects.create(execution=execution, text="Ada\n")
    InputLine.objects.create(execution=execution, text="more\n")
    InputLine.objects.create(execution=execution, eof=True)
    done = wait_for(execution, {"completed"})
    assert done.output == "name? hello Ada\n'more\\n'\n", done.errors
    assert not InputLine.objects.filter(execution=done, taken=False).exists()


@pytest.mark.django_db(transaction=True)
def test_a_metrics_port_already_taken_costs_the_metrics_not_the_runs(caplog):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        execution = submit("print('ran')")
        call_command("runworker", once=True, metrics_port=port, stdout=StringIO())
    execution.refresh_from_db()
    assert (execution.status, execution.output) == ("completed", "ran\n")
    assert "worker metrics not served" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_script_s_stderr_never_reaches_the_worker_s_log(caplog):
    """A forged 'bwrap:' line once made a system error and put the script's next line in the
    worker's log as if the worker wrote it (and paged operators through the alert)."""
    execution = submit(
        "import sys\nsys.stderr.write('bwrap: cannot mount\\nERROR forged line 7f1c\\n')\n"
        "sys.exit(1)"
    )
    call_command("runworker", once=True, stdout=StringIO())
    execution.refresh_from_db()
    assert (execution.status, execution.error_type) == ("completed", "script_error")
    assert "forged line 7f1c" not in caplog.text and "cannot mount" not in caplog.text


@pytest.mark.django_db
def test_an_output_file_that_cannot_be_kept_is_logged_without_its_name(caplog, monkeypatch):
    """The script chose the name: the worker's log says which file by number, never its name."""
    from executions.management.commands.runworker import Command
    from executions.models import OutputFile
    from executions.sandbox.contract import RunResult

    def refuse(**fields):
        raise OSError("disk full")

    monkeypatch.setattr(OutputFile.objects, "create", refuse)
    execution = submit("pass")
    files = (("ok.txt", b"1"), ("ERROR forged 9c2e.txt", b"22"))
    Command.keep_files(execution, RunResult(status="completed", files=files))
    assert "output file 2 (2 bytes) not kept: OSError" in caplog.text
    assert "forged 9c2e" not in caplog.text and "ok.txt" not in caplog.text


@pytest.mark.django_db(transaction=True)
def test_the_worker_records_what_each_run_used():
    from executions import metrics

    def count(histogram):
        return sum(
            s.value
            for m in histogram.collect()
            for s in m.samples
            if s.name.endswith("_count") and s.labels.get("backend") == "local"
        )

    before = count(metrics.RUN_CPU), count(metrics.RUN_MEMORY)
    submit("print(1)")
    call_command("runworker", once=True, stdout=StringIO())
    assert (count(metrics.RUN_CPU), count(metrics.RUN_MEMORY)) == (before[0] + 1, before[1] + 1)


@pytest.mark.django_db
def test_the_worker_deletes_expired_sessions_and_keeps_live_ones():
    """An anonymous caller that sends no cookie back is given a session with each run; Django
    never deletes expired ones itself, so the worker does (hourly)."""
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session

    from executions.management.commands.runworker import Command

    live, old = SessionStore(), SessionStore()
    live["token"], old["token"] = "live", "old"
    live.create()
    old.create()
    Session.objects.filter(session_key=old.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    Command.tidy()
    assert list(Session.objects.values_list("session_key", flat=True)) == [live.session_key]


def test_the_worker_tidies_once_an_interval(monkeypatch):
    from executions.management.commands import runworker

    calls = []
    command = runworker.Command()
    command.next_tidy = 0.0
    monkeypatch.setattr(runworker.Command, "tidy", staticmethod(lambda: calls.append(1)))
    command.maybe_tidy()
    command.maybe_tidy()
    assert calls == [1] and command.next_tidy > time.monotonic() + runworker.TIDY_S - 60


@pytest.mark.django_db
def test_a_run_no_longer_ours_is_not_said_to_wait_for_input():
    """Its lease ran out and another worker claimed it again: what the first worker's
    sandbox says of its script's input is not written on the second's run."""
    from executions.management.commands.runworker import LiveRun

    Execution.objects.create(script="input()", python_version="3.12", interactive=True)
    [first] = Execution.objects.claim("a", 10)
    Execution.objects.filter(pk=first.pk).update(status=Execution.Status.QUEUED, worker="")
    [again] = Execution.objects.claim("b", 10)
    LiveRun(first).waiting_for_input(True)
    again.refresh_from_db()
    assert again.awaiting_input is False

"""The load test's checker (tests/load/check.py) and its script kinds (tests/load/scripts.py)."""

import csv
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from executions.models import Execution
from tests.load import check, scripts

STATS = ["Type", "Name", "Request Count", "Failure Count", "50%", "95%"]
FAILURES = ["Method", "Name", "Error", "Occurrences"]


def write_csv(path, columns, rows):
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)


def reports(tmp_path, stats=(), failures=(), exceptions=0, ids=()):
    """A folder as run.sh leaves it: Locust's CSVs and the accepted runs' ids."""
    write_csv(
        tmp_path / "locust_stats.csv",
        STATS,
        [
            ("POST", "/api/v1/execute", 10, 0, 20, 40),
            ("GET", "/api/v1/k8s-limits", 5, 0, 3, 5),
            ("RUN", "trivial", 10, 0, 300, 500),
            *stats,
            ("", "Aggregated", 25, 0, 10, 300),
        ],
    )
    write_csv(tmp_path / "locust_failures.csv", FAILURES, failures)
    write_csv(
        tmp_path / "locust_exceptions.csv",
        ["Count", "Message", "Traceback", "Nodes"],
        [(exceptions, "KeyError", "...", "local")] if exceptions else [],
    )
    (tmp_path / "submitted.txt").write_text("".join(f"{i}\n" for i in ids))
    return tmp_path


def finished(kind="trivial", **fields):
    """A load-test run that ended as its kind should."""
    k = scripts.KINDS[kind]
    defaults = {
        "status": k.status,
        "exit_code": k.exit_code if k.exit_code is not None else 137,
        "error_type": k.error_type,
        "output": k.output or "",
        "started_at": timezone.now(),
        "finished_at": timezone.now(),
    }
    return Execution.objects.create(
        script=k.script, python_version="3.12", **{**defaults, **fields}
    )


def figure(out, label):
    """The value printed beside a label of the summary."""
    for line in out.splitlines():
        if line.startswith(label + "  "):
            return line[len(label) :].strip()
    raise AssertionError(f"no {label!r} in:\n{out}")


def run_check(tmp_path, since, grace=0, *options):
    out = StringIO()
    code = check.main(
        ["--since", since.isoformat(), "--report-dir", str(tmp_path), "--grace", str(grace)]
        + list(options),
        out=out,
    )
    return code, out.getvalue()


@pytest.fixture
def since():
    return timezone.now() - timedelta(seconds=1)


@pytest.mark.django_db
def test_it_passes_a_clean_run_and_counts_refusals_apart(tmp_path, since):
    runs = [finished(kind) for kind in scripts.KINDS]
    folder = reports(
        tmp_path,
        stats=[("POST", "/api/v1/execute (refused 429)", 3, 0, 5, 9)],
        ids=[r.execution_id for r in runs],
    )

    code, out = run_check(folder, since)

    assert code == 0, out
    assert "verdict: OK" in out
    assert figure(out, "refused 429 (throttled)") == "3"
    assert figure(out, "HTTP requests") == "18"  # RUN entries are not requests
    assert figure(out, "runs (database)") == "5"


@pytest.mark.django_db
def test_server_errors_fail_it(tmp_path, since):
    run = finished()
    folder = reports(
        tmp_path,
        failures=[("POST", "/run (htmx)", "CatchResponseError('HTTP 500: Server Error')", 2)],
        ids=[run.execution_id],
    )

    code, out = run_check(folder, since)

    assert code == 1
    assert figure(out, "server errors 5xx") == "2 (500: 2)"
    assert "2 server errors (5xx, not refusals)" in out


@pytest.mark.django_db
def test_other_failures_and_locustfile_errors_fail_it(tmp_path, since):
    run = finished()
    folder = reports(
        tmp_path,
        failures=[
            ("GET", "/", "CatchResponseError('HTTP 403: Forbidden')", 1),
            ("GET", "/", "CatchResponseError('no response: ConnectionRefusedError()')", 1),
            ("RUN", "fail", "RunProblem('fail: exit code 0, not 1')", 1),
        ],
        exceptions=1,
        ids=[run.execution_id],
    )

    code, out = run_check(folder, since)

    assert code == 1
    assert "2 other failed requests" in out
    assert "1 × GET /: CatchResponseError('no response: ConnectionRefusedError()')" in out
    assert "1 runs ended wrong for a client" in out
    assert "1 errors in the locustfile" in out


@pytest.mark.django_db
def test_it_finds_lost_stuck_and_wrong_runs(tmp_path, since):
    never_ran = Execution.objects.create(script=scripts.KINDS["trivial"].script)
    stuck = Execution.objects.create(
        script=scripts.KINDS["cpu"].script,
        status="running",
        lease_expires_at=timezone.now() - timedelta(seconds=30),
    )
    timed_out = finished("trivial", status="timeout", error_type="timeout", exit_code=137)
    wrong_output = finished("output", output="x" * 10)
    not_stored = "00000000-0000-4000-8000-000000000000"
    Execution.objects.create(script="print('not a load test run')")  # left alone
    folder = reports(tmp_path, ids=[never_ran.execution_id, timed_out.execution_id, not_stored])

    code, out = run_check(folder, since)

    assert code == 1
    assert figure(out, "lost (accepted, not in database)") == "1"
    assert figure(out, "lost (never ended)") == "1"
    assert figure(out, "stuck (running, lease expired)") == "1"
    assert figure(out, "wrong result") == "1 (output: 1)"
    assert figure(out, "starved (timed out, < 1 s CPU)") == "1 (trivial: 1)"
    assert f"{wrong_output.execution_id}: output: 10 characters of output" in out
    assert str(stuck.execution_id) in out
    assert figure(out, "runs (database)") == "4"


@pytest.mark.django_db
def test_starved_and_late_runs_fail_it_only_when_strict(tmp_path, since):
    starved = finished("cpu", status="timeout", error_type="timeout", exit_code=137)
    folder = reports(
        tmp_path,
        failures=[("RUN", "cpu", "RunProblem('cpu: ended timeout, not completed')", 1)],
        ids=[starved.execution_id],
    )

    code, out = run_check(folder, since)
    assert code == 0, out
    assert figure(out, "starved (timed out, < 1 s CPU)") == "1 (cpu: 1)"
    assert figure(out, "late or given up, seen by clients").startswith("1 ")
    assert "--strict fails on them" in out

    code, out = run_check(folder, since, 0, "--strict")
    assert code == 1
    assert "1 runs timed out needing under 1 s of CPU" in out
    assert "1 runs ended late or not at all for a client" in out


@pytest.mark.django_db
def test_nothing_run_is_a_failure(tmp_path, since):
    folder = reports(tmp_path)
    (folder / "locust_stats.csv").write_text(",".join(STATS) + "\n")

    code, out = run_check(folder, since)

    assert code == 1
    assert "Locust made no requests" in out and "no run was accepted" in out


@pytest.mark.django_db(transaction=True)
def test_it_waits_for_runs_to_end(tmp_path, since, monkeypatch):
    run = Execution.objects.create(script=scripts.KINDS["trivial"].script)

    def end_it(seconds):
        Execution.objects.filter(pk=run.pk).update(
            status="completed", exit_code=0, output="1\n", started_at=timezone.now()
        )

    monkeypatch.setattr(check, "sleep", end_it)
    code, out = run_check(reports(tmp_path, ids=[run.execution_id]), since, grace=60)

    assert code == 0, out
    assert "waiting up to 60 s for 1 queued or running runs to end" in out


def test_kinds_are_told_apart_by_their_first_line():
    for kind in scripts.KINDS.values():
        assert scripts.kind_of(kind.script) is kind
    assert scripts.kind_of("print(1)") is None
    assert scripts.kind_of(scripts.MARKER + "unknown\nprint(1)") is None


def test_a_page_seen_status_is_checked_alone():
    fail = scripts.KINDS["fail"]
    assert scripts.wrong(fail, "completed") == ""
    assert scripts.wrong(fail, "timeout") == "fail: ended timeout, not completed"
    assert scripts.wrong(fail, "completed", 0, None, "") == "fail: exit code 0, not 1"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_every_kind_ends_as_expected_in_the_real_sandbox(settings):
    """What the checker expects of each kind is what the platform really reports."""
    runs = {}
    for name, kind in scripts.KINDS.items():
        # A short wall clock for the one that must time out, a long one for the others (a busy
        # machine must not turn a second of CPU into a timeout here).
        wall = 1 if kind.status == "timeout" else 30
        settings.LIMITS = {**settings.LIMITS, "wall_time_s": wall}
        runs[name] = Execution.objects.submit(kind.script)

    call_command("runworker", once=True, concurrency=len(runs), stdout=StringIO())

    for name, run in runs.items():
        run.refresh_from_db()
        problem = scripts.wrong(
            scripts.KINDS[name], run.status, run.exit_code, run.error_type, run.output
        )
        assert problem == "", f"{problem} ({run.reason})"

"""After a load run: did every run end, right, and did the site answer without server errors?

    python tests/load/check.py --since 2026-12-02T10:00:00Z --report-dir artifacts/load/smoke-...

Reads the site's database through Django's ORM (the same DATABASE_URL as the site) and the
reports Locust wrote into --report-dir (locust_stats.csv, locust_failures.csv,
locust_exceptions.csv, and submitted.txt, the ids of the runs the site accepted). Problems,
each of which makes the exit status 1:

- lost: an accepted run the database does not have, or one still queued or running once the
  grace period is over (the check waits that long for the queue to drain);
- stuck: a run still "running" whose worker lease has expired (nobody recovered it);
- wrong: a finished load-test run (found by its first line, tests/load/scripts.py) that did not
  end as its script does, e.g. a failing script reported as completed with exit code 0;
- server errors: any 5xx answer (429 and 503 with Retry-After are refusals, which Locust
  counts apart as "... (refused 429|503)" and which are no problem);
- any other failed request (an unexpected 4xx, no answer), an error in the locustfile itself,
  or a run the client gave up waiting for;
- no requests, or no run accepted at all: a load test that ran nothing proves nothing.

Runs that were slow rather than wrong are counted and shown but fail the check only with
--strict (LOAD_STRICT=1): a run that timed out although its script needs under a second of CPU
(starved of CPU: the wall clock only runs from the script's start, so queueing cannot cause
it), and a run a client gave up waiting for. Both depend on the machine and what else it runs;
they are the issue's performance targets, not correctness.
"""

import argparse
import csv
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from time import monotonic, sleep

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.load import scripts  # noqa: E402

ACTIVE = ("queued", "running")
HTTP_CODE = re.compile(r"HTTP (\d{3})")
REFUSED = re.compile(r" \(refused (\d{3})\)$")
OUR_TYPES = ("RUN", "CHECK")  # the locustfile's own entries (not HTTP requests)


@dataclass
class Endpoint:
    kind: str  # GET, POST, ..., RUN, CHECK
    name: str
    requests: int
    failures: int
    p50: str
    p95: str


@dataclass
class Requests:
    """What Locust saw."""

    endpoints: list[Endpoint] = field(default_factory=list)
    refused: Counter = field(default_factory=Counter)  # {429: n, 503: n}
    server_errors: Counter = field(default_factory=Counter)  # {500: n, ...}
    other_failures: Counter = field(default_factory=Counter)  # {"HTTP 403": n, "no response": n}
    unanswered: Counter = field(default_factory=Counter)  # {"POST /api/...: no response: ...": n}
    run_problems: Counter = field(default_factory=Counter)  # wrong, as the clients saw them
    late: Counter = field(default_factory=Counter)  # starved or given up, as clients saw them
    exceptions: int = 0
    submitted: list[str] = field(default_factory=list)

    @property
    def http_requests(self) -> int:
        return sum(e.requests for e in self.endpoints if e.kind not in OUR_TYPES)


@dataclass
class Runs:
    """What the database holds about the load test's runs."""

    total: int = 0
    statuses: Counter = field(default_factory=Counter)  # "completed" / "failed system_error"
    missing: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    wrong: Counter = field(default_factory=Counter)
    starved: Counter = field(default_factory=Counter)  # timed out, needing under 1 s of CPU
    wrong_examples: list[str] = field(default_factory=list)
    queue_wait_ms: list[float] = field(default_factory=list)
    run_ms: list[float] = field(default_factory=list)


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def read_reports(report_dir: Path, prefix: str = "locust") -> Requests:
    seen = Requests()
    for row in read_csv(report_dir / f"{prefix}_stats.csv"):
        if row["Name"] == "Aggregated":
            continue
        endpoint = Endpoint(
            row["Type"],
            row["Name"],
            int(row["Request Count"]),
            int(row["Failure Count"]),
            row.get("50%", ""),
            row.get("95%", ""),
        )
        seen.endpoints.append(endpoint)
        if refused := REFUSED.search(endpoint.name):
            seen.refused[int(refused.group(1))] += endpoint.requests
    for row in read_csv(report_dir / f"{prefix}_failures.csv"):
        n, error = int(row["Occurrences"]), row["Error"]
        if row["Method"] == "RUN":
            late = "gave up" in error or "ended timeout" in error
            (seen.late if late else seen.run_problems)[error] += n
        elif code := HTTP_CODE.search(error):
            if code.group(1).startswith("5"):
                seen.server_errors[int(code.group(1))] += n
            else:
                seen.other_failures[f"HTTP {code.group(1)}"] += n
        elif "no response" in error:
            seen.other_failures["no response"] += n
            seen.unanswered[f"{row['Method']} {row['Name']}: {error}"[:200]] += n
        else:
            seen.other_failures[error[:80]] += n
    seen.exceptions = sum(
        int(row["Count"]) for row in read_csv(report_dir / f"{prefix}_exceptions.csv")
    )
    ids = report_dir / "submitted.txt"
    if ids.exists():
        seen.submitted = [line.strip() for line in ids.read_text().splitlines() if line.strip()]
    return seen


def load_runs(since: datetime, ids: list[str]):
    """The load test's runs: those named in ids, and any load-test script submitted since."""
    from django.db.models import Q

    from executions.models import Execution

    return Execution.objects.filter(
        Q(execution_id__in=ids) | Q(created_at__gte=since, script__startswith=scripts.MARKER)
    )


def wait_for_runs(since: datetime, ids: list[str], grace: float, out) -> None:
    """Let the queue drain: return once no run of the load test is queued or running, or when
    the grace period is over."""
    start = monotonic()
    told = False
    while (active := load_runs(since, ids).filter(status__in=ACTIVE).count()) and (
        monotonic() < start + grace
    ):
        if not told:
            out.write(f"waiting up to {grace:g} s for {active} queued or running runs to end\n")
            told = True
        sleep(1)
    if told:
        still = f"{active} still queued or running" if active else "all ended"
        out.write(f"after {monotonic() - start:.0f} s: {still}\n")


def check_runs(since: datetime, ids: list[str]) -> Runs:
    from django.utils import timezone

    found = Runs()
    now = timezone.now()
    known = set()
    fields = [
        "execution_id",
        "script",
        "status",
        "exit_code",
        "error_type",
        "output",
        "lease_expires_at",
        "created_at",
        "started_at",
        "finished_at",
    ]
    for run in load_runs(since, ids).only(*fields).iterator(chunk_size=200):
        found.total += 1
        known.add(str(run.execution_id))
        label = run.status + (f" {run.error_type}" if run.error_type else "")
        found.statuses[label] += 1
        if run.status == "running" and run.lease_expires_at and run.lease_expires_at < now:
            found.stuck.append(str(run.execution_id))
        elif run.status in ACTIVE:
            found.unfinished.append(f"{run.execution_id} ({run.status})")
        else:
            kind = scripts.kind_of(run.script)
            problem = kind and scripts.wrong(
                kind, run.status, run.exit_code, run.error_type, run.output
            )
            if problem and run.status == "timeout":
                found.starved[kind.name] += 1
            elif problem:
                found.wrong[kind.name] += 1
                if len(found.wrong_examples) < 5:
                    found.wrong_examples.append(f"{run.execution_id}: {problem}")
        if run.started_at:
            found.queue_wait_ms.append((run.started_at - run.created_at).total_seconds() * 1000)
            if run.finished_at:
                found.run_ms.append((run.finished_at - run.started_at).total_seconds() * 1000)
    found.missing = [i for i in dict.fromkeys(ids) if i not in known]
    return found


def problems(seen: Requests, runs: Runs, strict: bool = False) -> list[str]:
    found = []
    if not seen.http_requests:
        found.append("Locust made no requests (is the site up at HOST?)")
    if not runs.total:
        found.append("no run was accepted: nothing was tested")
    if runs.missing:
        found.append(f"{len(runs.missing)} accepted runs are not in the database: lost")
    if runs.unfinished:
        found.append(f"{len(runs.unfinished)} runs never ended: lost")
    if runs.stuck:
        found.append(f"{len(runs.stuck)} runs are stuck (running, lease expired)")
    if runs.wrong:
        found.append(f"{sum(runs.wrong.values())} runs ended wrong")
    if seen.server_errors:
        found.append(f"{sum(seen.server_errors.values())} server errors (5xx, not refusals)")
    if seen.other_failures:
        found.append(f"{sum(seen.other_failures.values())} other failed requests")
    if seen.run_problems:
        found.append(f"{sum(seen.run_problems.values())} runs ended wrong for a client")
    if seen.exceptions:
        found.append(f"{seen.exceptions} errors in the locustfile (see locust_exceptions.csv)")
    if strict and runs.starved:
        found.append(f"{sum(runs.starved.values())} runs timed out needing under 1 s of CPU")
    if strict and seen.late:
        found.append(f"{sum(seen.late.values())} runs ended late or not at all for a client")
    return found


def percentile(values: list[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.0f}"


def table(rows: list[tuple], out) -> None:
    """Text columns (the first two) to the left, numbers to the right."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            str(cell).ljust(width) if i < 2 else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        out.write("  ".join(cells).rstrip() + "\n")


def report(seen: Requests, runs: Runs, found: list[str], out, strict: bool = False) -> None:
    rows: list[tuple] = [("type", "name", "requests", "failures", "p50 ms", "p95 ms")]
    http = [e for e in seen.endpoints if e.kind not in OUR_TYPES]
    ours = [e for e in seen.endpoints if e.kind in OUR_TYPES]
    for e in sorted(http, key=lambda e: e.name) + sorted(ours, key=lambda e: e.name):
        rows.append((e.kind, e.name, e.requests, e.failures, e.p50, e.p95))
    table(rows, out)
    out.write("\n")
    summary = [
        ("HTTP requests", seen.http_requests),
        ("refused 429 (throttled)", seen.refused.get(429, 0)),
        ("refused 503 (queue full)", seen.refused.get(503, 0)),
        ("server errors 5xx", _counts(seen.server_errors)),
        ("other failed requests", _counts(seen.other_failures)),
        ("locustfile errors", seen.exceptions),
        ("runs (database)", runs.total),
        *[(f"  {status}", n) for status, n in sorted(runs.statuses.items())],
        ("queue wait p50 / p95 ms", f"{percentile(runs.queue_wait_ms, 0.5)} / "
         f"{percentile(runs.queue_wait_ms, 0.95)}"),
        ("run time p50 / p95 ms", f"{percentile(runs.run_ms, 0.5)} / "
         f"{percentile(runs.run_ms, 0.95)}"),
        ("lost (accepted, not in database)", len(runs.missing)),
        ("lost (never ended)", len(runs.unfinished)),
        ("stuck (running, lease expired)", len(runs.stuck)),
        ("wrong result", _counts(runs.wrong)),
        ("wrong, seen by clients", _counts(seen.run_problems)),
        ("starved (timed out, < 1 s CPU)", _counts(runs.starved)),
        ("late or given up, seen by clients", _counts(seen.late)),
    ]  # fmt: skip
    width = max(len(label) for label, _ in summary)
    for label, value in summary:
        out.write(f"{label.ljust(width)}  {value}\n")
    for example in runs.wrong_examples + runs.stuck[:5] + runs.unfinished[:5] + runs.missing[:5]:
        out.write(f"  e.g. {example}\n")
    for error, n in list((seen.run_problems + seen.late).items())[:5]:
        out.write(f"  client: {n} × {error}\n")
    for error, n in list(seen.other_failures.items())[:5]:
        out.write(f"  request: {n} × {error}\n")
    for error, n in list(seen.unanswered.items())[:5]:
        out.write(f"    {n} × {error}\n")
    out.write("\n")
    if found:
        out.write("verdict: FAIL\n" + "".join(f"  - {p}\n" for p in found))
    else:
        out.write("verdict: OK (nothing lost, stuck or wrong; no server errors)\n")
    if not strict and (runs.starved or seen.late):
        out.write("  (starved and late runs are performance findings: --strict fails on them)\n")


def _counts(counter: Counter) -> str:
    total = sum(counter.values())
    if not total:
        return "0"
    return f"{total} (" + ", ".join(f"{k}: {n}" for k, n in counter.most_common(4)) + ")"


def parse_since(value: str) -> datetime:
    when = datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def main(argv: list[str] | None = None, out=sys.stdout) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--since", required=True, type=parse_since, help="when the run began")
    parser.add_argument("--report-dir", type=Path, help="the folder Locust wrote its CSVs into")
    parser.add_argument("--prefix", default="locust", help="Locust's --csv prefix in that folder")
    parser.add_argument(
        "--grace",
        type=float,
        default=float(os.environ.get("LOAD_GRACE_S", 120)),
        help="seconds to wait for queued and running runs to end (default 120, LOAD_GRACE_S)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        default=os.environ.get("LOAD_STRICT", "") not in ("", "0"),
        help="fail on starved and late runs too (LOAD_STRICT=1)",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "integr8s.settings")
    import django

    django.setup()

    seen = read_reports(args.report_dir, args.prefix) if args.report_dir else Requests()
    wait_for_runs(args.since, seen.submitted, args.grace, out)
    runs = check_runs(args.since, seen.submitted)
    found = problems(seen, runs, args.strict)
    report(seen, runs, found, out, args.strict)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

"""How much the local sandbox adds to a trivial run: sandboxed vs bare interpreter, wall time."""

import os
import statistics
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from executions import limits, runtimes
from executions.sandbox.contract import COMPLETED, RunResult, RunSpec, Runtime
from executions.sandbox.local import LocalBackend

TARGET_RATIO = 1.5
SCRIPT = "pass"


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


@dataclass
class Figure:
    """One way of running the sandbox, and the bare interpreter timed between its runs."""

    label: str
    box: list[float]
    bare: list[float]
    failures: list[RunResult] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return statistics.median(self.box) / statistics.median(self.bare)


@dataclass
class Figures:
    runtime: Runtime
    mode: str  # what enforces the limits: cgroup v1, v2 or rlimits
    bare_cmd: list[str]
    figures: dict[str, Figure]
    # CPU the whole host spent per run (all cores, the kernel's work included): "bare", and
    # "sandbox" (warm: the spare's start is the next run's, and counts).
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def throughput_bound(self) -> float:
        """The most a sandbox per run allows of two bare interpreters' throughput, with the
        host's cores doing nothing else: bare CPU a run over sandboxed CPU a run."""
        return self.cpu_s["bare"] / self.cpu_s["sandbox"] if self.cpu_s else 0.0

    @property
    def seccomp_cost_s(self) -> float:
        """What the seccomp filter adds to a cold run (median with it minus median without)."""
        return statistics.median(self.figures["cold"].box) - statistics.median(
            self.figures["cold, no seccomp filter"].box
        )


def host_cpu_s() -> float:
    """CPU time the host has spent, all cores and the kernel's work included (/proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def cpu_per_run(work: Any, runs: int) -> float:
    work()
    start = host_cpu_s()
    for _ in range(runs):
        work()
    time.sleep(0.2)  # what the last run left to the kernel (a namespace's teardown)
    return (host_cpu_s() - start) / runs


def measure(runs: int, python: str = "") -> Figures:
    """Warm and cold sandboxes, and cold without the seccomp filter, each interleaved with the
    bare interpreter. Raises UnknownVersion, or CommandError if every sandboxed run failed."""
    runtime = runtimes.get(python, "local")
    limit = limits.current()
    bare_cmd = [runtime.executable, "-I", "-S", "-c", SCRIPT]

    def bare() -> float:
        started = time.perf_counter()
        subprocess.run(bare_cmd, capture_output=True, check=True)
        return time.perf_counter() - started

    # The default backend keeps a warm sandbox ready (bubblewrap and the interpreter started,
    # waiting for a script); spares=0 shows what a run costs without one, and seccomp=False
    # what the seccomp filter costs.
    figures = {}
    mode = ""
    cpu: dict[str, float] = {}
    for label, spares, seccomp in (
        ("warm", 1, True),
        ("cold", 0, True),
        ("cold, no seccomp filter", 0, False),
    ):
        backend = LocalBackend(
            name=f"{settings.SANDBOX_NAME}-bench", spares=spares, seccomp=seccomp
        )
        mode = backend.mode
        try:
            figure = sample(label, backend, runtime, limit, bare, runs)
            if label == "warm":
                cpu = {
                    "bare": cpu_per_run(bare, runs),
                    "sandbox": cpu_per_run(
                        lambda backend=backend: backend.run(
                            RunSpec(SCRIPT, runtime, limit, run_id=f"bench-{uuid.uuid4().hex}"),
                            threading.Event(),
                        ),
                        runs,
                    ),
                }
        finally:
            backend.close()
        if not figure.box:
            raise CommandError(f"every sandboxed run failed, e.g. {figure.failures[-1].to_dict()}")
        figures[label] = figure
    return Figures(runtime, mode, bare_cmd, figures, cpu)


def sample(label: str, backend: LocalBackend, runtime: Runtime, limit: Any, bare: Any, runs: int):
    figure = Figure(label, [], [])

    def sandboxed() -> float | None:
        spec = RunSpec(SCRIPT, runtime, limit, run_id=f"bench-{uuid.uuid4().hex}")
        started = time.perf_counter()
        result = backend.run(spec, threading.Event())
        elapsed = time.perf_counter() - started
        if result.status != COMPLETED or result.exit_code != 0:
            figure.failures.append(result)
            return None
        return elapsed

    for _ in range(3):  # warm caches for both
        sandboxed()
        bare()
    figure.failures.clear()
    for _ in range(runs):  # interleaved, so load on the machine hits both alike
        elapsed = sandboxed()
        if elapsed is not None:
            figure.box.append(elapsed)
        figure.bare.append(bare())
    return figure


def lines(found: Figures) -> list[str]:
    """The figures in words, one line each, ending with the verdict on the warm ratio."""
    runs = len(found.figures["warm"].bare)
    out = [
        f"Python {found.runtime.version} ({found.runtime.executable}), {runs} runs each, "
        f"limits by {found.mode}"
    ]
    for label, figure in found.figures.items():
        box, raw = figure.box, figure.bare
        out.append(
            f"sandbox, {label} (LocalBackend.run): median {statistics.median(box) * 1000:.1f}"
            f" ms, p95 {p95(box) * 1000:.1f} ms; bare ({' '.join(found.bare_cmd[1:])}): median "
            f"{statistics.median(raw) * 1000:.1f} ms, p95 {p95(raw) * 1000:.1f} ms; "
            f"ratio {figure.ratio:.2f}"
        )
        if label.startswith("cold, no"):
            out.append(
                f"  the seccomp filter costs {found.seccomp_cost_s * 1000:+.1f} ms a run "
                "(cold; same run)"
            )
        if figure.failures:
            out.append(
                f"  {len(figure.failures)} sandboxed run(s) failed and were left out: "
                f"{figure.failures[-1].reason}"
            )
    if found.cpu_s:
        out.append(
            f"CPU a run, the whole host's: sandbox (warm) {found.cpu_s['sandbox'] * 1000:.1f} ms, "
            f"bare {found.cpu_s['bare'] * 1000:.1f} ms: a sandbox per run allows at most "
            f"{found.throughput_bound:.0%} of two bare interpreters' throughput"
        )
    ratio = found.figures["warm"].ratio
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    out.append(f"{verdict}: ratio {ratio:.2f} as configured (warm; target <= {TARGET_RATIO})")
    return out


class Command(BaseCommand):
    help = "Median and p95 wall time of `pass` through LocalBackend.run vs the bare interpreter."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--runs", type=int, default=50)
        parser.add_argument("--python", default="", help="Python version, e.g. 3.12")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            found = measure(max(options["runs"], 1), options["python"])
        except runtimes.UnknownVersion as exc:
            raise CommandError(str(exc), returncode=2) from None
        for line in lines(found):
            self.stdout.write(line)

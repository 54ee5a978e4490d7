"""How much the local sandbox adds to a trivial run: sandboxed vs bare interpreter, wall time."""

import statistics
import subprocess
import threading
import time
import uuid

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from executions import limits, runtimes
from executions.sandbox.contract import RunSpec
from executions.sandbox.local import LocalBackend

TARGET_RATIO = 1.5
SCRIPT = "pass"


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


class Command(BaseCommand):
    help = "Median and p95 wall time of `pass` through LocalBackend.run vs the bare interpreter."

    def add_arguments(self, parser):
        parser.add_argument("--runs", type=int, default=50)
        parser.add_argument("--python", default="", help="Python version, e.g. 3.12")

    def handle(self, *args, **options):
        runs = max(options["runs"], 1)
        try:
            runtime = runtimes.get(options["python"], "local")
        except runtimes.UnknownVersion as exc:
            raise CommandError(str(exc), returncode=2) from None
        limit = limits.current()
        bare_cmd = [runtime.executable, "-I", "-S", "-c", SCRIPT]
        w = self.stdout.write

        def bare() -> float:
            started = time.perf_counter()
            subprocess.run(bare_cmd, capture_output=True, check=True)
            return time.perf_counter() - started

        # The default backend keeps a warm sandbox ready (bubblewrap and the interpreter
        # started, waiting for a script); spares=0 shows what a run costs without one, and
        # seccomp=False what the seccomp filter costs.
        figures = {}
        for label, spares, seccomp in (
            ("warm", 1, True),
            ("cold", 0, True),
            ("cold, no seccomp filter", 0, False),
        ):
            backend = LocalBackend(
                name=f"{settings.SANDBOX_NAME}-bench", spares=spares, seccomp=seccomp
            )
            try:
                box, raw, failures = self.measure(backend, runtime, limit, bare, runs)
            finally:
                backend.close()
            if not box:
                raise CommandError(f"every sandboxed run failed, e.g. {failures[-1].to_dict()}")
            figures[label] = (box, raw, failures)
        w(
            f"Python {runtime.version} ({runtime.executable}), {runs} runs each, limits by "
            f"{backend.mode}"
        )
        for label, (box, raw, failures) in figures.items():
            ratio = statistics.median(box) / statistics.median(raw)
            w(
                f"sandbox, {label} (LocalBackend.run): median {statistics.median(box) * 1000:.1f}"
                f" ms, p95 {p95(box) * 1000:.1f} ms; bare ({' '.join(bare_cmd[1:])}): median "
                f"{statistics.median(raw) * 1000:.1f} ms, p95 {p95(raw) * 1000:.1f} ms; "
                f"ratio {ratio:.2f}"
            )
            if label.startswith("cold, no"):
                cold = statistics.median(figures["cold"][0])
                cost = (cold - statistics.median(box)) * 1000
                w(f"  the seccomp filter costs {cost:+.1f} ms a run (cold; same run)")
            if failures:
                w(
                    f"  {len(failures)} sandboxed run(s) failed and were left out: "
                    f"{failures[-1].reason}"
                )
        box, raw, _ = figures["warm"]
        ratio = statistics.median(box) / statistics.median(raw)
        verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
        w(f"{verdict}: ratio {ratio:.2f} as configured (warm; target <= {TARGET_RATIO})")

    @staticmethod
    def measure(backend, runtime, limit, bare, runs):
        failures = []

        def sandboxed() -> float | None:
            spec = RunSpec(SCRIPT, runtime, limit, run_id=f"bench-{uuid.uuid4().hex}")
            started = time.perf_counter()
            result = backend.run(spec, threading.Event())
            elapsed = time.perf_counter() - started
            if result.status != "completed" or result.exit_code != 0:
                failures.append(result)
                return None
            return elapsed

        for _ in range(3):  # warm caches for both
            sandboxed()
            bare()
        box, raw = [], []
        for _ in range(runs):  # interleaved, so load on the machine hits both alike
            elapsed = sandboxed()
            if elapsed is not None:
                box.append(elapsed)
            raw.append(bare())
        return box, raw, failures

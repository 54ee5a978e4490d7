"""How much the local sandbox adds to a trivial run: sandboxed vs bare interpreter, wall time."""

import statistics
import subprocess
import threading
import time
import uuid

from django.core.management.base import BaseCommand, CommandError

from executions import limits, runtimes
from executions.sandbox.base import RunSpec
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
        backend = LocalBackend()
        limit = limits.current()
        bare_cmd = [runtime.executable, "-I", "-S", "-c", SCRIPT]

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

        def bare() -> float:
            started = time.perf_counter()
            subprocess.run(bare_cmd, capture_output=True, check=True)
            return time.perf_counter() - started

        for _ in range(3):  # warm caches for both
            sandboxed()
            bare()
        box, raw = [], []
        for _ in range(runs):  # interleaved, so load on the machine hits both alike
            elapsed = sandboxed()
            if elapsed is not None:
                box.append(elapsed)
            raw.append(bare())
        if not box:
            raise CommandError(f"every sandboxed run failed, e.g. {failures[-1].to_dict()}")

        box_med, raw_med = statistics.median(box), statistics.median(raw)
        ratio = box_med / raw_med
        w = self.stdout.write
        w(
            f"Python {runtime.version} ({runtime.executable}), {runs} runs each, limits by "
            f"{backend.mode}"
        )
        w(
            f"sandbox (LocalBackend.run): median {box_med * 1000:.1f} ms, "
            f"p95 {p95(box) * 1000:.1f} ms"
        )
        w(
            f"bare ({' '.join(bare_cmd[1:])}): median {raw_med * 1000:.1f} ms, "
            f"p95 {p95(raw) * 1000:.1f} ms"
        )
        if failures:
            w(f"{len(failures)} sandboxed run(s) failed and were left out: {failures[-1].reason}")
        verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
        w(f"{verdict}: ratio {ratio:.2f} (target <= {TARGET_RATIO})")

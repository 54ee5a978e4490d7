"""`make bench`: every figure of docs/performance.md, measured in one run on this machine.

The sandbox against the bare interpreter (bench_sandbox), then the service as `make run` serves
it (`manage.py serve`: gunicorn and a worker) on a scratch SQLite file and on a scratch
PostgreSQL database: end-to-end latency of `wait=true` and of submit+poll, throughput at 1 to 16
clients against two bare interpreters, API reads while runs queue and the processes' memory;
then what a user would pick instead, a container and a pod per run under podman; and what
importing numpy, pandas and matplotlib costs in the sandbox, cold and warm. Every figure is
printed beside its baseline from this run. Figures only: no target stops the run. --only runs
some of the sections.
"""

import http.client
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from executions import limits, runtimes
from executions.management.commands import bench_sandbox
from executions.management.commands._bench_report import (
    ImportCost,
    Imports,
    Level,
    Memory,
    Paired,
    Reads,
    Report,
    Sample,
    Service,
    pct,
    write,
)
from executions.models import ACTIVE, Status
from executions.sandbox.contract import COMPLETED, RunSpec, Runtime
from executions.sandbox.local import LocalBackend
from executions.sandbox.local.command import site_dir

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = 'print("hi")'
POSTGRES = "postgres://postgres@127.0.0.1:5432"
PODMAN_SETUP = ROOT / ".ci" / "podman-setup.sh"
READS = ("/api/v1/k8s-limits", "/api/v1/runtimes")
POLL_S = 0.01  # how often a submit+poll client asks for its result
MEMORY_EVERY_S = 0.1
SECTIONS = ("sandbox", "imports", "sqlite", "postgresql", "podman")  # --only's names
PLOT = """import matplotlib.pyplot as plt
import pandas as pd

pd.DataFrame({"x": range(10), "y": [n * n for n in range(10)]}).plot(x="x", y="y")
plt.savefig("/tmp/outputs/plot.png")
"""
# (label, script): the first is the baseline, standard library only.
IMPORT_SCRIPTS = (
    ("print(1)", "print(1)"),
    ("import numpy", "import numpy"),
    ("import pandas", "import pandas"),
    ("import matplotlib.pyplot", "import matplotlib.pyplot"),
    ("pandas + a small plot saved as PNG", PLOT),
)


# --- the service's processes -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass  # gone meanwhile
    return found


def descendants(pid: int) -> list[int]:
    found = children(pid)
    return found + [d for c in found for d in descendants(c)]


def rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0  # gone, or a kernel thread


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Processes:
    """The web server's and the worker's processes under `manage.py serve`, found once the site
    is up. Fixed pids: a fork that has not yet exec'd (a sandbox's start) would count its
    parent's pages twice."""

    def __init__(self, serve: int):
        self.web: list[int] = []
        self.worker = 0
        self.server = ""  # the web server's command line, for the report
        for child in children(serve):
            line = cmdline(child)
            if "gunicorn" in line or "uvicorn" in line:
                self.web += [child, *descendants(child)]
                self.server = line.strip().replace(sys.executable, "python")
            elif "runworker" in line:
                self.worker = child

    def sample(self, since: float) -> Memory:
        own = cmdline(self.worker)
        boxes = [d for d in descendants(self.worker) if cmdline(d) != own] if self.worker else []
        return Memory(
            time.monotonic() - since,
            web=sum(rss(pid) for pid in self.web),
            worker=rss(self.worker) if self.worker else 0,
            sandboxes=sum(rss(pid) for pid in boxes),
        )


def ensure_database(server: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(server: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def site(url: str, log: Path) -> Iterator[tuple[int, int]]:
    """`manage.py serve` (what `make run` runs) on url: (port, serve's pid) once it answers."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        # The bench is one anonymous caller sending thousands of runs.
        "THROTTLE_ANON": "100000000/min",
        "THROTTLE_USER": "100000000/min",
        "MAX_ACTIVE_PER_CALLER": "100000",
        "LOG_LEVEL": "WARNING",
    }
    argv = [sys.executable, "manage.py", "serve", "--port", str(port), "--worker-metrics-port", "0"]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_up(port, proc, log)
        yield port, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_up(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90  # migrate on a fresh database first
    problem = ""
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            Client(port).wait()
            return
        except (OSError, RuntimeError, http.client.HTTPException) as exc:
            problem = str(exc)
            time.sleep(0.3)
    tail = log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"the site did not come up ({problem or 'it exited'}); its log:\n{tail}")


class Client:
    """One API client with a kept-alive connection, as a script using the API would have."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, data, headers)
                response = self.conn.getresponse()
                raw = response.read()
                try:
                    return response.status, json.loads(raw or b"null")
                except ValueError:  # an error page: say what it was
                    return response.status, {"not JSON": raw[:300].decode(errors="replace")}
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # gunicorn closed a connection idle past its keep-alive: connect again.
                self.conn.close()
                if attempt == 2:
                    raise
            except (OSError, http.client.HTTPException):
                self.conn.close()  # a timeout, say: the next request starts afresh
                raise
        raise AssertionError("unreachable")

    def wait(self) -> None:
        code, data = self.call("POST", "/api/v1/execute?wait=true", {"script": SCRIPT})
        if code != 200 or data.get("status") != Status.COMPLETED or data.get("output") != "hi\n":
            raise RuntimeError(f"wait=true answered {code}: {data}")

    def submit_and_poll(self) -> None:
        code, data = self.call("POST", "/api/v1/execute", {"script": SCRIPT})
        if code != 202:
            raise RuntimeError(f"a submission answered {code}: {data}")
        path = f"/api/v1/result/{data['execution_id']}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            code, data = self.call("GET", path)
            if code != 200:
                raise RuntimeError(f"{path} answered {code}: {data}")
            if data["status"] not in ACTIVE:
                break
            time.sleep(POLL_S)
        else:
            raise RuntimeError(f"{path} had not ended after 60 s: {data['status']}")
        if data["status"] != Status.COMPLETED or data.get("output") != "hi\n":
            raise RuntimeError(f"the run ended {data['status']}: {data}")

    def read(self, path: str) -> None:
        code, data = self.call("GET", path)
        if code != 200:
            raise RuntimeError(f"{path} answered {code}: {data}")


def timed(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def back_to_back(threads: int, total: int, make: Callable[[], Callable[[], Any]]) -> float:
    """Runs per second of `total` calls shared by `threads` threads, each with its own make()."""
    tickets = itertools.count()
    lock = threading.Lock()

    def loop(work: Callable[[], Any]) -> None:
        while True:
            with lock:
                if next(tickets) >= total:
                    return
            work()

    workers = [threading.Thread(target=loop, args=(make(),)) for _ in range(threads)]
    started = time.perf_counter()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return total / (time.perf_counter() - started)


# --- podman: what a user would pick instead -------------------------------------------------


def podman_image() -> tuple[str, str]:
    """(the image .ci/podman-setup.sh builds, or ''; why podman cannot be measured, or '')."""
    if not shutil.which("podman"):
        return "", "podman is not installed (.ci/podman-setup.sh installs it)"
    try:
        found = re.search(
            r"^IMAGE=\$\{INTEGR8S_PODMAN_IMAGE:-([^}]+)\}", PODMAN_SETUP.read_text(), re.M
        )
    except OSError as exc:
        return "", f"{PODMAN_SETUP} cannot be read ({exc}), so the test image is unknown"
    if not found:
        return "", f"{PODMAN_SETUP} names no IMAGE=${{INTEGR8S_PODMAN_IMAGE:-...}}"
    image = os.environ.get("INTEGR8S_PODMAN_IMAGE") or found.group(1)
    try:
        exists = subprocess.run(["podman", "image", "exists", image], timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "", f"podman does not answer ({exc})"
    if not exists:
        return "", f"the image {image} is missing (run .ci/podman-setup.sh as root)"
    return image, ""


def podman_run(image: str) -> None:
    subprocess.run(
        ["podman", "run", "--rm", "--network", "none", "--memory", "128m", image,
         "python3", "-I", "-S", "-c", SCRIPT],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def kube_play(backend: Any, spec: RunSpec) -> None:
    """The kubernetes backend's own Pod and ConfigMap for the script, run as tests/k8s/podman.py
    runs them; the backend's classify() must find the run completed with its output."""
    nonce = secrets.token_hex(16)
    pod, config_map = backend.manifests(spec, nonce=nonce)
    name = pod["metadata"]["name"]
    container = f"{name}-script"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.yaml"
        path.write_text(yaml.safe_dump_all([config_map, pod]))

        def podman(*args: str) -> bytes:
            return subprocess.run(
                ["podman", *args], check=True, capture_output=True, timeout=120
            ).stdout

        try:
            podman("kube", "play", "--network", "none", str(path))
            podman("wait", container)
            state = json.loads(podman("inspect", container))[0]["State"]
            log = podman("logs", container)
        finally:
            subprocess.run(["podman", "kube", "down", str(path)], capture_output=True, timeout=120)
            subprocess.run(["podman", "pod", "rm", "-f", name], capture_output=True, timeout=120)
            # podman 4.3 makes the ConfigMap a named volume, which kube down leaves behind.
            subprocess.run(["podman", "volume", "rm", name], capture_output=True, timeout=120)
    code = state["ExitCode"]
    reason = "OOMKilled" if state.get("OOMKilled") else ("Completed" if code == 0 else "Error")
    status = {
        "phase": "Succeeded" if code == 0 else "Failed",
        "containerStatuses": [
            {"name": "script", "state": {"terminated": {"exitCode": code, "reason": reason}}}
        ],
    }
    result = backend.classify(spec, {"status": status}, log, nonce, {"podman_state": state})
    if result.status != COMPLETED or result.output != "hi\n":
        raise RuntimeError(f"the pod ended {result.status}: {result.reason or result.errors}")


# --- importing packages in the sandbox ------------------------------------------------------


def evict(folder: Path) -> int:
    """Drop folder's files from the page cache; how many files. posix_fadvise(DONTNEED) needs
    no root and loses nothing but the cache; pages a live process has mapped stay."""
    count = 0
    for path in folder.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            count += 1
        finally:
            os.close(fd)
    return count


def measure_imports(runtime: Runtime, runs: int, say: Callable[[str], None]) -> Imports:
    """IMPORT_SCRIPTS through LocalBackend.run as the worker runs it: `runs` cold runs of each
    (the package set evicted just before), then `runs` warm ones, round by round so the host's
    drift hits every script alike. Under the operator's maxima, so that a cost above the
    defaults still shows in full."""
    site = Path(site_dir(runtime.version))
    asked = {name: top for name, top in limits.maxima().items() if name != "output_kb"}
    found = Imports(
        runtime.version, str(site), 0, limits.current(), limits.for_request(asked),
        [ImportCost(what, script) for what, script in IMPORT_SCRIPTS],
    )  # fmt: skip
    backend = LocalBackend(name=f"{settings.SANDBOX_NAME}-bench")

    def run(cost: ImportCost) -> Sample | None:
        spec = RunSpec(
            cost.script, runtime, found.measured_under, run_id=f"bench-{uuid.uuid4().hex}"
        )
        started = time.perf_counter()
        result = backend.run(spec, threading.Event())
        seconds = time.perf_counter() - started
        if result.status != COMPLETED or result.exit_code != 0:
            cost.failures.append(result.reason or result.errors[-300:] or result.status)
            return None
        if cost.script == PLOT and not result.files:
            cost.failures.append("the plot left no file in /tmp/outputs")
            return None
        return Sample(
            seconds, result.wall_time_ms or 0, result.cpu_time_ms or 0, result.peak_memory_kb or 0
        )

    try:
        for _ in range(runs):
            for cost in found.costs:
                found.evicted = evict(site)
                if sample := run(cost):
                    cost.cold.append(sample)
        for cost in found.costs:  # warms the page cache; a failure still counts
            run(cost)
        for _ in range(runs):
            for cost in found.costs:
                if sample := run(cost):
                    cost.warm.append(sample)
    finally:
        backend.close()
    for line in import_lines(found):
        say(line)
    return found


def import_lines(found: Imports) -> list[str]:
    runs = max(len(c.cold) + len(c.warm) for c in found.costs) // 2
    m = found.measured_under
    out = [
        f"\nimporting packages, Python {found.version}, LocalBackend.run, about {runs} runs of "
        f"each cold and warm (cold: {found.evicted} files of {found.site} evicted first), "
        f"under {m.memory_mib} MiB / {m.wall_time_s:g} s wall / {m.cpu_time_s:g} s CPU:"
    ]
    for cost in found.costs:
        parts = []
        for name, samples in (("cold", cost.cold), ("warm", cost.warm)):
            if not samples:
                parts.append(f"{name}: no run completed")
                continue
            t = [s.seconds for s in samples]
            parts.append(
                f"{name} p50 {pct(t, 0.5) * 1000:.0f} ms p95 {pct(t, 0.95) * 1000:.0f} ms, CPU "
                f"p50 {pct([s.cpu_ms for s in samples], 0.5)} ms, peak "
                f"{max(s.peak_kb for s in samples) / 1024:.0f} MiB"
            )
        out.append(f"  {cost.what}: " + "; ".join(parts))
        out.append(f"    within the defaults? {cost.verdict(found.defaults).replace('**', '')}")
        if cost.failures:
            out.append(f"    {len(cost.failures)} run(s) failed: {cost.failures[-1]}")
    return out


# --- the command -----------------------------------------------------------------------------


def sections(only: str) -> list[str]:
    """--only's list (every section when empty); CommandError naming an unknown one."""
    asked = [name.strip() for name in only.split(",") if name.strip()] or list(SECTIONS)
    unknown = [name for name in asked if name not in SECTIONS]
    if unknown:
        raise CommandError(
            f"--only: no section {', '.join(unknown)}; there are {', '.join(SECTIONS)}"
        )
    return asked


def other_workers() -> int:
    """integr8s workers running on this host: other people's tests or load tests, which share
    the host's sandbox slots with the bench's own worker."""
    return sum(
        1
        for d in Path("/proc").iterdir()
        if d.name.isdigit() and "runworker" in cmdline(int(d.name))
    )


def code() -> str:
    """The commit measured, and whether the work tree had changes on top of it."""
    try:
        git = ["git", "-C", str(ROOT)]
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True)  # fmt: skip
    except OSError:
        return "code: not a git checkout"
    if head.returncode:
        return "code: not a git checkout"
    extra = " with uncommitted changes in the work tree" if dirty.stdout.strip() else ""
    return f"code: commit {head.stdout.strip()}{extra}"


def machine() -> list[str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    return [
        f"{os.cpu_count()} CPUs (`nproc`: {len(os.sched_getaffinity(0))}), {model}, "
        f"{int(mem) / 1024 / 1024:.0f} GiB, Linux {os.uname().release}",
        code(),
        f"at the start: load average {os.getloadavg()[0]:.2f}, {other_workers()} other integr8s "
        "worker(s) on the host (other people's tests run here too, and share its sandbox slots)",
    ]


class Command(BaseCommand):
    help = "Measure the sandbox, the service and podman in one run; write docs/performance.md."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--runs", type=int, default=100, help="samples of each latency")
        parser.add_argument("--throughput-runs", type=int, default=200, help="runs per level")
        parser.add_argument("--podman-runs", type=int, default=20)
        parser.add_argument("--clients", default="1,2,4,8,16", help="throughput levels")
        parser.add_argument("--load-clients", type=int, default=16, help="while reads are timed")
        parser.add_argument(
            "--postgres",
            default=os.environ.get("BENCH_POSTGRES_URL", POSTGRES),
            help="a PostgreSQL server (no database): the bench makes a scratch database on it",
        )
        parser.add_argument(
            "--import-runs", type=int, default=10, help="cold and warm runs of each import"
        )
        parser.add_argument(
            "--only", default="", help=f"some sections, comma-separated: {','.join(SECTIONS)}"
        )
        parser.add_argument("--output", default=str(ROOT / "docs"), help="folder for the report")

    def say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def handle(self, *args: Any, **options: Any) -> None:
        runs = max(1, options["runs"])
        only = sections(options["only"])
        self.runtime = runtimes.get(None, "local")
        self.bare_cmd = [self.runtime.executable, "-I", "-S", "-c", SCRIPT]
        self.machine = machine()
        report = Report(
            date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            machine=self.machine,
            command=command_line(options),
            bare_cmd=" ".join(["python" + self.runtime.version, *self.bare_cmd[1:4]])
            + f" '{SCRIPT}'",
            poll_s=POLL_S,
            load_clients=options["load_clients"],
        )
        left_out = [name for name in SECTIONS if name not in only]
        if left_out:
            report.skipped.append(f"left out by --only: {', '.join(left_out)}")
        if "sandbox" in only:
            report.sandbox = bench_sandbox.measure(runs)
            for line in bench_sandbox.lines(report.sandbox):
                self.say(line)
        if "imports" in only:
            self.imports(report, max(1, options["import_runs"]))

        levels = [int(n) for n in options["clients"].split(",")]
        scratch = Path(tempfile.mkdtemp(prefix="integr8s-bench-"))
        try:
            # A folder of its own: SQLite's waiters watch the database's folder, not the logs.
            (scratch / "sqlite").mkdir()
            sqlite = f"sqlite:///{scratch / 'sqlite' / 'bench.sqlite3'}"
            if "sqlite" in only:
                report.services.append(
                    self.service("SQLite", sqlite, scratch, runs, levels, options)
                )
            if "postgresql" in only:
                self.postgresql(report, scratch, runs, levels, options)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

        if "podman" in only:
            self.alternatives(report, max(1, options["podman_runs"]))
        report.machine.append(
            f"at the end: load average {os.getloadavg()[0]:.2f}, {other_workers()} other "
            f"integr8s worker(s); Python {self.runtime.version} ({self.runtime.executable})"
        )
        path = write(report, Path(options["output"]))
        self.say(f"\nwrote {path}")

    def bare(self) -> None:
        subprocess.run(self.bare_cmd, check=True, capture_output=True)

    def imports(self, report: Report, runs: int) -> None:
        site = Path(site_dir(self.runtime.version))
        if not site.is_dir():
            why = (
                f"importing packages: Python {self.runtime.version} has no package set at "
                f"{site} (manage.py build_runtimes --default builds it)"
            )
            report.skipped.append(why)
            self.say(f"\nskipped {why}")
            return
        report.imports = measure_imports(self.runtime, runs, self.say)

    def postgresql(
        self, report: Report, scratch: Path, runs: int, levels: list[int], options: dict
    ) -> None:
        server = options["postgres"].rstrip("/")
        name = f"integr8s_bench_{os.getpid()}"
        try:
            ensure_database(server, name)
        except Exception as exc:  # no server, or no right to create databases
            why = f"PostgreSQL: no scratch database on {server} ({exc})"
            report.skipped.append(why)
            self.say(f"\nskipped {why}")
            return
        try:
            url = f"{server}/{name}"
            report.services.append(self.service("PostgreSQL", url, scratch, runs, levels, options))
        finally:
            drop_database(server, name)

    # --- the service ---------------------------------------------------------------------

    def service(
        self, name: str, url: str, scratch: Path, runs: int, levels: list[int], options: dict
    ) -> Service:
        log = scratch / f"serve-{name.lower()}.log"
        with site(url, log) as (port, serve):
            self.say(f"\n{name}: manage.py serve on port {port} (log {log})")
            found = Service(
                name,
                Paired(f"`POST /api/v1/execute?wait=true`, {name}", [], [], f"wait=true, {name}"),
                Paired(f"submit+poll, {name}", [], []),
            )
            try:
                self.load(found, port, serve, runs, levels, options)
            except Exception:
                self.say(f"the bench failed; the site's log ends:\n{log.read_text()[-3000:]}")
                raise
        return found

    def load(
        self, found: Service, port: int, serve: int, runs: int, levels: list[int], options: dict
    ) -> None:
        self.latency(found, port, runs)
        processes = Processes(serve)
        found.server = processes.server
        found.idle = processes.sample(time.monotonic())
        idle = {path: self.reads(port, path, runs) for path in READS}

        sampling = threading.Event()
        since = time.monotonic()

        def sample() -> None:
            while not sampling.wait(MEMORY_EVERY_S):
                found.memory.append(processes.sample(since))

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            for clients in levels:
                found.levels.append(
                    self.throughput(port, clients, options["throughput_runs"], found)
                )
            loaded = self.under_load(port, options["load_clients"], runs, found)
        finally:
            sampling.set()
            sampler.join()
        found.reads = [Reads(path, idle[path], loaded[path]) for path in READS]
        for r in found.reads:
            self.say(
                f"  GET {r.path}: idle p50 {pct(r.idle, 0.5) * 1000:.1f} ms, p95 "
                f"{pct(r.idle, 0.95) * 1000:.1f} ms; with {options['load_clients']} clients "
                f"running p50 {pct(r.loaded, 0.5) * 1000:.1f} ms, p95 "
                f"{pct(r.loaded, 0.95) * 1000:.1f} ms "
                f"({statistics.median(r.loaded) / statistics.median(r.idle):.1f}x)"
            )
        mib = 1024 * 1024
        for attr in ("web", "worker", "sandboxes"):
            peak = max((getattr(m, attr) for m in found.memory), default=0)
            self.say(
                f"  RSS {attr}: idle {getattr(found.idle, attr) / mib:.0f} MiB, peak under "
                f"load {peak / mib:.0f} MiB"
            )
        if found.errors:
            self.say(f"  {len(found.errors)} request(s) failed: {found.errors[-1]}")

    def latency(self, found: Service, port: int, runs: int) -> None:
        client = Client(port)
        wait, poll = self.guarded(client.wait, found), self.guarded(client.submit_and_poll, found)
        for _ in range(5):  # warm up connections and caches
            wait()
            poll()
            self.bare()
        # A request that failed counts with the time it took, and is listed.
        for _ in range(runs):  # interleaved, so the VM's drift hits all three alike
            found.wait.times.append(timed(wait))
            found.wait.bare.append(timed(self.bare))
            found.poll.times.append(timed(poll))
        found.poll.bare = found.wait.bare
        wait_s, poll_s, bare = found.wait.times, found.poll.times, found.wait.bare
        self.say(
            f'service latency, print("hi"), {runs} runs, end to end:\n'
            f"  wait=true    median {found.wait.median * 1000:6.1f} ms  p95 "
            f"{pct(wait_s, 0.95) * 1000:6.1f} ms  p99 {pct(wait_s, 0.99) * 1000:6.1f} ms  ratio "
            f"{found.wait.ratio:.2f}\n"
            f"  submit+poll  median {found.poll.median * 1000:6.1f} ms  p95 "
            f"{pct(poll_s, 0.95) * 1000:6.1f} ms  p99 {pct(poll_s, 0.99) * 1000:6.1f} ms  ratio "
            f"{found.poll.ratio:.2f}\n"
            f"  bare         median {found.wait.bare_median * 1000:6.1f} ms  p95 "
            f"{pct(bare, 0.95) * 1000:6.1f} ms  ({' '.join(self.bare_cmd)})\n"
            f"  {'PASS' if found.wait.ratio <= 1.5 else 'FAIL'}: wait=true ratio "
            f"{found.wait.ratio:.2f} (target <= 1.5)"
        )

    def reads(self, port: int, path: str, runs: int) -> list[float]:
        client = Client(port)
        client.read(path)
        return [timed(lambda: client.read(path)) for _ in range(runs)]

    def guarded(self, work: Callable[[], None], found: Service) -> Callable[[], None]:
        """work, with a failure listed in found.errors instead of stopping the bench."""

        def run() -> None:
            try:
                work()
            except (OSError, RuntimeError, http.client.HTTPException) as exc:
                found.errors.append(str(exc)[:300])

        return run

    def throughput(self, port: int, clients: int, total: int, found: Service) -> Level:
        rate = back_to_back(clients, total, lambda: self.guarded(Client(port).wait, found))
        ceiling = back_to_back(2, total, lambda: self.bare)
        level = Level(clients, rate, ceiling)
        self.say(
            f"  throughput, {clients:2d} clients: {rate:6.1f} runs/s; two bare interpreters "
            f"{ceiling:6.1f} runs/s; share {level.share:4.0%}"
        )
        return level

    def under_load(
        self, port: int, clients: int, runs: int, found: Service
    ) -> dict[str, list[float]]:
        stop = threading.Event()

        def submitter() -> None:
            run = self.guarded(Client(port).wait, found)
            while not stop.is_set():
                run()

        threads = [threading.Thread(target=submitter) for _ in range(clients)]
        for t in threads:
            t.start()
        try:
            time.sleep(1)  # let the queue fill
            return {path: self.reads(port, path, runs) for path in READS}
        finally:
            stop.set()
            for t in threads:
                t.join()

    # --- podman --------------------------------------------------------------------------

    def alternatives(self, report: Report, runs: int) -> None:
        image, why = podman_image()
        if why:
            for what in ("a container per run", "a pod per run"):
                report.skipped.append(f"{what} (podman): {why}")
            self.say(f"\nskipped podman: {why}")
            return
        from executions.sandbox.kubernetes import KubernetesBackend

        backend = KubernetesBackend(
            api=object(), namespace="default", installation=f"{settings.SANDBOX_NAME}-bench"
        )
        spec = RunSpec(
            SCRIPT, Runtime("3.11", image=image), limits.current(), run_id=uuid.uuid4().hex
        )
        for what, short, work in (
            (f"container per run, `podman run --rm --network none --memory 128m` ({image})",
             "container per run (podman run)", lambda: podman_run(image)),
            (f"pod per run, `podman kube play` of the backend's Pod ({image})",
             "pod per run (podman kube play)", lambda: kube_play(backend, spec)),
        ):  # fmt: skip
            try:
                for _ in range(min(3, runs)):
                    work()
                    self.bare()
                times, bare = [], []
                for _ in range(runs):
                    times.append(timed(work))
                    bare.append(timed(self.bare))
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                report.skipped.append(f"{what}: it failed ({str(exc)[:300]})")
                self.say(f"\n{what} failed: {exc}")
                continue
            row = Paired(what, times, bare, short)
            report.alternatives.append(row)
            self.say(
                f"\n{what}, {runs} runs: median {row.median * 1000:.0f} ms, p95 "
                f"{pct(times, 0.95) * 1000:.0f} ms; bare median {row.bare_median * 1000:.1f} ms; "
                f"ratio {row.ratio:.1f}"
            )


def command_line(options: dict[str, Any]) -> str:
    defaults = {
        "runs": 100,
        "throughput_runs": 200,
        "podman_runs": 20,
        "clients": "1,2,4,8,16",
        "load_clients": 16,
        "import_runs": 10,
        "only": "",
    }
    extra = [
        f"--{key.replace('_', '-')} {options[key]}"
        for key, value in defaults.items()
        if options[key] != value
    ]
    return " ".join(["make bench"] if not extra else ["python manage.py bench", *extra])

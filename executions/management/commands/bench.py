"""`make bench`: the sandbox benchmark, then the service benchmark on PostgreSQL.

The service benchmark starts gunicorn and a worker on a scratch PostgreSQL database, then
compares POST /api/v1/execute?wait=true for print("hi") with the bare interpreter running the
same script: latency one request at a time, and throughput with 8 concurrent clients against
two bare interpreters running back to back. Figures only; no assertion stops the run.
"""

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from django.core.management import call_command
from django.core.management.base import BaseCommand

from executions import runtimes

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = 'print("hi")'
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/integr8s_bench"


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_database(url: str):
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


class Client:
    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def execute(self) -> dict:
        body = json.dumps({"script": SCRIPT})
        self.conn.request(
            "POST", "/api/v1/execute?wait=true", body, {"Content-Type": "application/json"}
        )
        response = self.conn.getresponse()
        data = json.loads(response.read())
        if response.status != 200 or data.get("status") != "completed":
            raise RuntimeError(f"unexpected answer {response.status}: {data}")
        return data


class Command(BaseCommand):
    help = "Benchmark the sandbox and the service (prints figures; compares with the baseline)."

    def add_arguments(self, parser):
        parser.add_argument("--runs", type=int, default=50)
        parser.add_argument("--throughput-runs", type=int, default=200)
        parser.add_argument("--skip-sandbox", action="store_true")
        parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))

    def handle(self, *args, **options):
        if not options["skip_sandbox"]:
            call_command("bench_sandbox", runs=options["runs"], stdout=self.stdout)
        self.service(
            options["database_url"] or DEFAULT_DB, options["runs"], options["throughput_runs"]
        )

    def bare(self, interpreter: str):
        start = time.perf_counter()
        subprocess.run([interpreter, "-c", SCRIPT], check=True, capture_output=True)
        return time.perf_counter() - start

    def service(self, url, runs, throughput_runs):
        ensure_database(url)
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "DEBUG": "false",
            "SECRET_KEY": "bench-only",
            "THROTTLE_ANON": "1000000/min",
            "MAX_ACTIVE_PER_CALLER": "100000",
            "LOG_LEVEL": "WARNING",
        }
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True
        )
        # Two runs per core: a run's sandbox start and result write overlap another's work.
        concurrency = 2 * (os.cpu_count() or 1)
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "integr8s.wsgi",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--worker-class",
                    "gthread",
                    "--workers",
                    "1",
                    "--threads",
                    "32",
                    "--log-level",
                    "warning",
                ],
                cwd=ROOT,
                env=env,
            ),
            subprocess.Popen(
                [sys.executable, "manage.py", "runworker", "--concurrency", str(concurrency)],
                cwd=ROOT,
                env=env,
            ),
        ]
        try:
            self.wait_up(port)
            interpreter = runtimes.get(None).executable
            self.latency(port, interpreter, runs)
            self.throughput(port, interpreter, throughput_runs)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)

    def wait_up(self, port):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                Client(port).execute()
                return
            except (OSError, RuntimeError, http.client.HTTPException):
                time.sleep(0.2)
        raise RuntimeError("the service did not come up in 30 s")

    def latency(self, port, interpreter, runs):
        client = Client(port)
        for _ in range(5):  # warm up connections and caches
            client.execute()
            self.bare(interpreter)
        api, bare = [], []
        for _ in range(runs):
            start = time.perf_counter()
            client.execute()
            api.append(time.perf_counter() - start)
            bare.append(self.bare(interpreter))
        ratio = statistics.median(api) / statistics.median(bare)
        self.stdout.write(
            f'\nservice latency, POST /api/v1/execute?wait=true, print("hi"), {runs} runs '
            f"(PostgreSQL, gunicorn gthread, runworker):\n"
            f"  api    median {statistics.median(api) * 1000:7.1f} ms   "
            f"p95 {pct(api, 0.95) * 1000:7.1f} ms\n"
            f"  bare   median {statistics.median(bare) * 1000:7.1f} ms   "
            f"p95 {pct(bare, 0.95) * 1000:7.1f} ms   ({interpreter} -c)\n"
            f"  ratio  {ratio:.2f}x  (target <= 3.0x: {'PASS' if ratio <= 3 else 'FAIL'})"
        )

    def throughput(self, port, interpreter, total):
        def run_clients(n, work):
            counter = iter(range(total))
            lock = threading.Lock()

            def loop():
                state = work()
                while True:
                    with lock:
                        if next(counter, None) is None:
                            return
                    state()

            threads = [threading.Thread(target=loop) for _ in range(n)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return total / (time.perf_counter() - start)

        api = run_clients(8, lambda: Client(port).execute)
        bare = run_clients(2, lambda: lambda: self.bare(interpreter))
        share = api / bare
        self.stdout.write(
            f'\nservice throughput, {total} runs of print("hi"):\n'
            f"  api, 8 concurrent clients          {api:7.1f} runs/s\n"
            f"  bare, 2 interpreters back to back  {bare:7.1f} runs/s\n"
            f"  share  {share * 100:.0f} %  (target >= 50 %: {'PASS' if share >= 0.5 else 'FAIL'})"
        )

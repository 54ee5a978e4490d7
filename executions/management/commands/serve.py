"""Start the web server and one worker together: the one-machine setup behind `make run`.

Both are supervised: one that exits on its own is started again after a back-off (1 s, then
doubling up to 30 s; back to 1 s once it has stayed up a minute), with the reason logged, so
the site keeps serving when its worker crashes. Ctrl+C (SIGINT) or SIGTERM stops both.
"""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_S = 60.0  # up this long, a restart starts the back-off from the beginning again


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    started: float = 0.0
    backoff: float = BACKOFF_FIRST_S
    restart_at: float | None = None
    restarts: int = field(default=0)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv)
        self.started = time.monotonic()
        self.restart_at = None

    def exited(self) -> tuple[str, float] | None:
        """(why the child stopped, in words; seconds until its restart) if it just did."""
        if self.proc is None or self.restart_at is not None:
            return None
        code = self.proc.poll()
        if code is None:
            return None
        now = time.monotonic()
        if now - self.started >= STABLE_S:
            self.backoff = BACKOFF_FIRST_S
        delay = self.backoff
        self.restart_at = now + delay
        why = (
            f"killed by signal {signal.Signals(-code).name}"
            if code < 0 and -code in signal.valid_signals()
            else f"exit code {code}"
        )
        self.backoff = min(self.backoff * 2, BACKOFF_MAX_S)
        return why, delay


class Command(BaseCommand):
    help = "Migrate, then run the web server and a worker, restarting either if it dies."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument("--concurrency", type=int, default=settings.WORKER_CONCURRENCY)
        # The worker's own metrics (finished runs, run time, queue wait): a second scrape
        # target beside the web's /metrics, on loopback. 0 turns it off.
        parser.add_argument(
            "--worker-metrics-port",
            type=int,
            default=int(os.environ.get("WORKER_METRICS_PORT", 9100)),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        bind = f"{options['host']}:{options['port']}"
        # How it serves (ASGI, processes, keep-alive, timeouts): integr8s/gunicorn.py.
        web = [
            sys.executable, "-m", "gunicorn", "-c", "python:integr8s.gunicorn",
            "integr8s.asgi:application", "--bind", bind,
        ]  # fmt: skip
        worker = [
            sys.executable, "manage.py", "runworker",
            "--concurrency", str(options["concurrency"]),
        ]  # fmt: skip
        if options["worker_metrics_port"]:
            worker += ["--metrics-port", str(options["worker_metrics_port"])]
        children = [Child("web server", web), Child("worker", worker)]
        for child in children:
            child.start()
        self.stdout.write(f"integr8s is up on http://{bind}/ (Ctrl+C stops it)")

        stopping = False

        def on_signal(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not stopping:
            for child in children:
                stopped = child.exited()
                if stopped:
                    why, delay = stopped
                    self.stderr.write(
                        f"integr8s: the {child.name} stopped ({why}); starting it again in "
                        f"{delay:g} s"
                    )
                if child.restart_at is not None and time.monotonic() >= child.restart_at:
                    child.restarts += 1
                    child.start()
            time.sleep(0.2)
        for child in children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        for child in children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()

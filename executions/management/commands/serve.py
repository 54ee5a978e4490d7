"""Start the web server and one worker together: the one-machine setup behind `make run`."""

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Migrate, then run gunicorn (threaded) and runworker until Ctrl+C stops both."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        # One process keeps /metrics whole (prometheus_client counts per process).
        parser.add_argument(
            "--web-processes", type=int, default=int(os.environ.get("WEB_PROCESSES", 1))
        )
        # wait=true requests and live pages hold a thread each while a run is going.
        parser.add_argument("--threads", type=int, default=int(os.environ.get("WEB_THREADS", 32)))
        parser.add_argument("--concurrency", type=int, default=settings.WORKER_CONCURRENCY)

    def handle(self, *args, **options):
        call_command("migrate", interactive=False, verbosity=0)
        bind = f"{options['host']}:{options['port']}"
        web = [
            sys.executable,
            "-m",
            "gunicorn",
            "integr8s.wsgi",
            "--bind",
            bind,
            "--worker-class",
            "gthread",
            "--workers",
            str(options["web_processes"]),
            "--threads",
            str(options["threads"]),
            "--access-logfile",
            "-",
            "--graceful-timeout",
            "20",
        ]
        worker = [
            sys.executable,
            "manage.py",
            "runworker",
            "--concurrency",
            str(options["concurrency"]),
        ]
        procs = [subprocess.Popen(web), subprocess.Popen(worker)]
        self.stdout.write(f"integr8s is up on http://{bind}/ (Ctrl+C stops it)")

        interrupted = False

        def on_signal(signum, frame):
            nonlocal interrupted
            interrupted = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while all(p.poll() is None for p in procs) and not interrupted:
            time.sleep(0.2)
        # Ctrl+C, or one of the two exited on its own: take the other down too.
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if not interrupted:
            self.stderr.write("integr8s stopped: the web server or the worker exited.")
            sys.exit(1)

"""Run one script file through a sandbox backend and print the result (no database needed)."""

import json
import re
import threading
from pathlib import Path

import yaml
from django.core.management.base import BaseCommand, CommandError

from executions import limits, runtimes
from executions.sandbox import get_backend
from executions.sandbox.contract import RunSpec

# What the script printed reaches the operator's terminal as text: escape sequences and other
# controls (all but newline and tab) are shown as \xNN, or a script could clear the screen and
# draw a report of its own over the real one.
TERMINAL_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class Command(BaseCommand):
    help = "Run a Python script in the sandbox and print what came back."

    def add_arguments(self, parser):
        parser.add_argument("file", help="the script to run")
        parser.add_argument("--python", default="", help="Python version, e.g. 3.12")
        parser.add_argument("--stdin", default="", help="a file to feed to the script's stdin")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        parser.add_argument("--backend", choices=["local", "kubernetes"], default=None)
        parser.add_argument(
            "--dry-run", action="store_true", help="print what the backend would create"
        )

    def handle(self, *args, **options):
        limit = limits.current()
        script = self.read(options["file"], "script", limit.script_bytes)
        stdin = self.read(options["stdin"], "stdin", limit.stdin_bytes) if options["stdin"] else ""
        backend_name = options["backend"]
        try:
            runtime = runtimes.get(options["python"], backend_name)
        except runtimes.UnknownVersion as exc:
            raise CommandError(str(exc), returncode=2) from None
        try:
            backend = get_backend(backend_name)
        except Exception as exc:  # e.g. the kubernetes client cannot load its configuration
            raise CommandError(f"backend unavailable: {exc}", returncode=2) from None
        spec = RunSpec(script=script, runtime=runtime, limits=limit, stdin=stdin)

        if options["dry_run"]:
            objects = backend.manifests(spec)
            if objects:
                self.stdout.write(yaml.safe_dump_all(objects, sort_keys=False), ending="")
            else:
                self.stdout.write(f"# the {backend.name} backend creates no objects for a run")
            return

        result = backend.run(spec, threading.Event())
        if options["json"]:
            self.stdout.write(json.dumps(result.to_dict()))
            return
        self.print_text(result)

    def read(self, name: str, what: str, limit: int) -> str:
        path = Path(name)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(
                f"cannot read {what} file {name}: {exc.strerror}", returncode=2
            ) from None
        if len(data) > limit:
            raise CommandError(
                f"{what} file {name} is {limits.human_bytes(len(data))}; "
                f"the limit is {limits.human_bytes(limit)}",
                returncode=2,
            )
        return data.decode("utf-8", errors="replace")

    def print_text(self, result) -> None:
        w = self.stdout.write
        w(f"Status:     {result.status}")
        w(f"Python:     {result.python_version}")
        w(f"Exit code:  {'-' if result.exit_code is None else result.exit_code}")
        if result.error_type:
            w(f"Error type: {result.error_type}")
        if result.reason:
            w(f"Reason:     {result.reason}")
        w(
            f"Usage:      {result.wall_time_ms} ms wall, {result.cpu_time_ms} ms CPU, "
            f"{result.peak_memory_kb} KiB peak memory"
        )
        for title, text, cut in (
            ("Output", result.output, result.output_truncated),
            ("Errors", result.errors, result.errors_truncated),
        ):
            w(f"--- {title}{' (truncated)' if cut else ''} ---")
            if text:
                text = TERMINAL_CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
                w(text, ending="" if text.endswith("\n") else "\n")

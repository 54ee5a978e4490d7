"""Install the curated package set per Python version, for the local sandbox to bind.

Each version's pins, with hashes, are executions/runtime_packages/<version>.txt (made from
requirements.in with uv pip compile). The set is installed with that interpreter's own pip
into RUNTIMES_DIR/<version>/site.new, then moved to site: a run sees the old set or the new
one, never half of one. A version without pins, or whose install fails, is left out and said.
"""

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from executions import runtimes
from executions.sandbox.local.command import site_dir

PINS = Path(__file__).resolve().parents[2] / "runtime_packages"


class Command(BaseCommand):
    help = "Install the curated package set for each local Python version (or those given)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--python", action="append", dest="versions", metavar="VERSION", default=[]
        )
        parser.add_argument("--default", action="store_true", help="The default version only.")
        parser.add_argument(
            "--if-missing", action="store_true", help="Skip versions that have a set already."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        found = runtimes.available("local")
        wanted = options["versions"] or list(found)
        if options["default"]:
            wanted = [runtimes.default_version("local")]
        left_out = []
        for version in wanted:
            if version not in found:
                raise CommandError(str(runtimes.UnknownVersion(version, list(found))))
            if options["if_missing"] and os.path.isdir(site_dir(version)):
                continue
            problem = self.build(version, found[version].executable)
            if problem:
                left_out.append(version)
                self.stderr.write(f"Python {version}: left out, {problem}")
            else:
                self.stdout.write(f"Python {version}: {site_dir(version)}")
        if left_out and options["versions"]:
            raise CommandError(f"Not built: {', '.join(left_out)}.")

    def build(self, version: str, executable: str) -> str:
        """Install version's set; "" when done, else why not."""
        pins = PINS / f"{version}.txt"
        if not pins.exists():
            return f"no package set is pinned for it ({pins.name} is missing)."
        target = Path(site_dir(version))
        fresh = target.with_name("site.new")
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.parent.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(
            [
                executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                "--no-input", "--require-hashes", "--only-binary=:all:", "--no-deps",
                "--root-user-action=ignore", "--target", str(fresh), "-r", str(pins),
            ],
            capture_output=True,
            text=True,
        )  # fmt: skip
        if out.returncode != 0:
            shutil.rmtree(fresh, ignore_errors=True)
            last = (out.stderr.strip().splitlines() or ["pip failed"])[-1]
            return f"pip could not install its set: {last}"
        # pip's own console scripts are of no use without a shell; the sandbox reads, never runs.
        shutil.rmtree(fresh / "bin", ignore_errors=True)
        for path in [fresh, *fresh.rglob("*")]:
            mode = 0o755 if path.is_dir() else 0o644  # readable by the sandbox's host uid
            if not path.is_symlink():
                path.chmod(mode)
        old = target.with_name("site.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        fresh.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        return ""

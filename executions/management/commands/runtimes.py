"""List the Python versions users may pick, and what runs each one."""

from django.conf import settings
from django.core.management.base import BaseCommand

from executions import runtimes


class Command(BaseCommand):
    help = "List available Python versions (interpreters, or images for kubernetes)."

    def add_arguments(self, parser):
        parser.add_argument("--backend", choices=["local", "kubernetes"], default=None)

    def handle(self, *args, **options):
        backend = options["backend"] or settings.EXECUTION_BACKEND
        found = runtimes.available(backend)
        if not found:
            self.stdout.write(f"No Python versions are available for the {backend} backend.")
            return
        default = runtimes.default_version(backend)
        self.stdout.write(f"Python versions for the {backend} backend:")
        for version, runtime in found.items():
            where = runtime.image if backend == "kubernetes" else runtime.executable
            mark = "  (default)" if version == default else ""
            self.stdout.write(f"  {version:<6} {where}{mark}")

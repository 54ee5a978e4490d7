"""Delete output files of runs older than FILES_RETENTION_DAYS (or --days), with their rows."""

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from executions.models import OutputFile


class Command(BaseCommand):
    help = "Delete runs' output files older than the retention (FILES_RETENTION_DAYS)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=float, default=settings.FILES_RETENTION_DAYS)

    def handle(self, *args: Any, **options: Any) -> None:
        cutoff = timezone.now() - timedelta(days=options["days"])
        old = OutputFile.objects.filter(created_at__lt=cutoff)
        count = 0
        for found in old.iterator():
            found.delete()  # the post_delete signal removes the stored file
            count += 1
        self.stdout.write(f"Deleted {count} output file(s) older than {options['days']:g} days.")

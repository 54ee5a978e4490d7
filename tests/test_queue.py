"""The database as the queue: several worker processes, hundreds of runs, each run exactly once."""

import time

import pytest
from django.db import connection

from executions.models import Execution
from tests.test_worker import start_worker, stop


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_several_workers_run_every_execution_exactly_once():
    # A few hundred on PostgreSQL (the production queue); fewer on SQLite, same mechanism.
    count = 240 if connection.vendor == "postgresql" else 60
    executions = [Execution.objects.submit(f"print({i})") for i in range(count)]
    workers = [start_worker("--concurrency", "2") for _ in range(3)]
    try:
        deadline = time.monotonic() + 180
        while Execution.objects.active().exists():
            assert time.monotonic() < deadline, "runs were still queued or running after 180 s"
            time.sleep(0.2)
    finally:
        logs = [stop(w) for w in workers]
    assert all(code == 0 for code, _ in logs), logs

    by_id = {e.pk: e for e in Execution.objects.all()}
    assert len(by_id) == count
    for i, submitted in enumerate(executions):
        done = by_id[submitted.pk]
        assert (done.status, done.output, done.attempts) == ("completed", f"{i}\n", 1), done
    used = {e.worker for e in by_id.values()}
    assert len(used) >= 2, f"only {used} took work"

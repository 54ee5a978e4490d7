"""The metrics the dashboards and alerts need beyond runs and requests: oldest queued age,
workers alive and their heartbeats and slots, CPU and memory per run."""

import shutil
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from executions import metrics
from executions.models import Execution, Worker
from tests.conftest import run_of


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels)


@pytest.mark.django_db
def test_the_oldest_queued_run_is_measured_from_its_submission():
    assert sample("integr8s_execution_oldest_queued_seconds") == 0
    old = run_of()
    Execution.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(minutes=3))
    run_of()
    running = run_of(status=Execution.Status.RUNNING)
    Execution.objects.filter(pk=running.pk).update(created_at=timezone.now() - timedelta(hours=1))

    age = sample("integr8s_execution_oldest_queued_seconds")

    assert 180 <= age < 240
    assert sample("integr8s_executions_active", status="queued") == 2


@pytest.mark.django_db
def test_workers_alive_heartbeat_age_and_slots_come_from_the_heartbeats():
    now = timezone.now()
    Worker.objects.create(name="fresh", backend="local", concurrency=2, seen_at=now)
    Worker.objects.create(
        name="quiet", backend="local", concurrency=4, seen_at=now - timedelta(minutes=2)
    )
    Worker.objects.create(name="stopped", backend="local", seen_at=now, stopped_at=now)
    Worker.objects.create(name="long-gone", backend="local", seen_at=now - timedelta(hours=2))

    assert sample("integr8s_workers_alive") == 1
    assert sample("integr8s_worker_heartbeat_age_seconds", worker="fresh") < 5
    assert 120 <= sample("integr8s_worker_heartbeat_age_seconds", worker="quiet") < 180
    assert sample("integr8s_worker_concurrency", worker="quiet") == 4
    for gone in ("stopped", "long-gone"):
        assert sample("integr8s_worker_heartbeat_age_seconds", worker=gone) is None


@pytest.mark.django_db
def test_no_worker_at_all_is_zero_alive_not_a_missing_series():
    assert sample("integr8s_workers_alive") == 0


@pytest.mark.django_db  # every sample read collects the queue figures too
def test_a_runs_cpu_and_memory_are_observed():
    before_cpu = sample("integr8s_execution_cpu_seconds_count", backend="test") or 0
    before_mem = sample("integr8s_execution_peak_memory_bytes_sum", backend="test") or 0

    metrics.observe_usage("test", cpu_time_ms=250, peak_memory_kb=10240)
    metrics.observe_usage("test", cpu_time_ms=None, peak_memory_kb=None)  # never ran

    assert sample("integr8s_execution_cpu_seconds_count", backend="test") == before_cpu + 1
    assert sample("integr8s_execution_peak_memory_bytes_sum", backend="test") == (
        before_mem + 10 * 2**20
    )


def test_a_database_that_does_not_answer_leaves_the_queue_figures_out(monkeypatch):
    from django.db import DatabaseError

    def refuse(self):
        raise DatabaseError("gone")

    monkeypatch.setattr(metrics.QueueCollector, "read", refuse)
    assert sample("integr8s_workers_alive") is None


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
@pytest.mark.django_db(transaction=True)
def test_the_local_sandbox_reports_its_start_time_for_the_worker_dashboard():
    """The workers dashboard's "sandbox start time" panel: the default backend reports it too
    (only the kubernetes one did, so the panel stayed empty beside `make run`)."""
    from io import StringIO

    from django.core.management import call_command

    def local(suffix):
        return sample(f"integr8s_sandbox_start_seconds_{suffix}", backend="local") or 0

    before_count, before_sum = local("count"), local("sum")
    ran = Execution.objects.submit("print(1)")

    call_command("runworker", once=True, stdout=StringIO())

    ran.refresh_from_db()
    assert ran.status == "completed"
    assert local("count") == before_count + 1
    assert 0 < local("sum") - before_sum < 5


def refusals(reason):
    return sample("integr8s_refusals_total", reason=reason)


def test_every_refusal_reason_is_exported_at_zero_before_the_first():
    """rate() and the overview's "refusals by reason" panel see the first refusal only if its
    series was there before it."""
    for reason in metrics.REFUSAL_REASONS:
        assert refusals(reason) is not None, reason
    for outcome in ("requeued", "failed"):
        assert sample("integr8s_executions_recovered_total", outcome=outcome) is not None


@pytest.mark.django_db
def test_each_limit_counts_its_refusals_by_reason(settings, alice_api, client):
    from rest_framework.test import APIClient

    execute = "/api/v1/execute"
    before = {r: refusals(r) for r in metrics.REFUSAL_REASONS}

    def counted():
        return {
            r: refusals(r) - before[r] for r in metrics.REFUSAL_REASONS if refusals(r) > before[r]
        }

    settings.MAX_ACTIVE_PER_CALLER = 1
    assert alice_api.post(execute, {"script": "1"}, format="json").status_code == 202
    assert alice_api.post(execute, {"script": "1"}, format="json").status_code == 429
    assert counted() == {"runs_in_flight": 1}

    settings.MAX_QUEUED = 1
    assert APIClient().post(execute, {"script": "1"}, format="json").status_code == 503
    assert counted() == {"runs_in_flight": 1, "queue_full": 1}

    settings.MAX_QUEUED, settings.MAX_ACTIVE_PER_CALLER = 100, 100
    settings.THROTTLE_USER = "2/min"  # the first run above counted
    codes = [alice_api.post(execute, {"script": "1"}, format="json").status_code for _ in "ab"]
    assert codes == [202, 429]
    assert counted() == {"runs_in_flight": 1, "queue_full": 1, "submissions": 1}

    settings.THROTTLE_LOGIN = "0/min"
    assert client.post("/accounts/login/", {"username": "x", "password": "y"}).status_code == 429
    assert counted()["password_attempts"] == 1

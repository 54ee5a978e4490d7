"""Liveness, readiness and the Prometheus endpoint."""

from datetime import timedelta

import pytest
from django.utils import timezone

from executions.models import Execution, Worker


def test_healthz_says_alive(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_wants_a_fresh_worker(client):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "no worker" in response.json()["reason"]

    Worker.objects.create(name="w1", backend="local", seen_at=timezone.now())
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["workers"] == 1


@pytest.mark.django_db
def test_readyz_ignores_stale_and_stopped_workers(client):
    Worker.objects.create(name="old", backend="local", seen_at=timezone.now() - timedelta(hours=1))
    Worker.objects.create(name="gone", backend="local", stopped_at=timezone.now())
    assert client.get("/readyz").status_code == 503


@pytest.mark.django_db
def test_metrics_show_submissions_and_queue(client):
    Execution.objects.submit("print(1)")
    Execution.objects.submit("print(2)")

    text = client.get("/metrics").content.decode()

    assert 'integr8s_executions_active{status="queued"} 2.0' in text
    assert "integr8s_executions_submitted_total" in text
    assert "django_http_requests_total_by_method_total" in text

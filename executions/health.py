"""Liveness and readiness for load balancers and Kubernetes probes."""

from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.http import JsonResponse
from django.utils import timezone

from executions.models import Worker


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Ready when the database answers and a worker has sent a heartbeat recently."""
    try:
        fresh_since = timezone.now() - timedelta(seconds=max(30, settings.WORKER_LEASE_S * 2))
        workers = Worker.objects.filter(stopped_at=None, seen_at__gte=fresh_since).count()
    except DatabaseError as exc:
        return JsonResponse({"status": "unavailable", "database": str(exc)}, status=503)
    if not workers:
        return JsonResponse(
            {
                "status": "unavailable",
                "database": "ok",
                "workers": 0,
                "reason": "no worker has sent a heartbeat recently",
            },
            status=503,
        )
    return JsonResponse({"status": "ok", "database": "ok", "workers": workers})

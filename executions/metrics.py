"""Execution metrics for Prometheus, served with django-prometheus' at /metrics.

The worker exposes the same registry on its own port (runworker --metrics-port).
"""

import logging

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

SUBMITTED = Counter(
    "integr8s_executions_submitted_total", "Executions submitted.", ["python_version"]
)
FINISHED = Counter(
    "integr8s_executions_finished_total",
    "Executions that reached a final status.",
    ["status", "error_type", "python_version"],
)
QUEUE_WAIT = Histogram(
    "integr8s_execution_queue_wait_seconds",
    "Time from submission to the start of the run.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RUN_DURATION = Histogram(
    "integr8s_execution_run_seconds",
    "Wall time of a run in its sandbox, start to finish.",
    ["backend"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SANDBOX_START = Histogram(
    "integr8s_sandbox_start_seconds",
    "Time for a sandbox to start the interpreter (pod scheduling included on Kubernetes).",
    ["backend"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
IN_FLIGHT = Gauge("integr8s_executions_in_flight", "Runs this worker has in its sandboxes now.")
RECOVERED = Counter(
    "integr8s_executions_recovered_total",
    "Runs whose worker was lost: requeued or failed.",
    ["outcome"],
)


class QueueCollector:
    """Queued and running executions, read from the database at scrape time."""

    def describe(self):
        # Registering calls describe(), not collect(): no query while apps are loading.
        yield GaugeMetricFamily("integr8s_executions_active", "", labels=["status"])

    def collect(self):
        from django.db import DatabaseError
        from django.db.models import Count

        from executions.models import ACTIVE, Execution

        family = GaugeMetricFamily(
            "integr8s_executions_active",
            "Executions queued or running, from the database.",
            labels=["status"],
        )
        try:
            counts = dict(Execution.objects.active().values_list("status").annotate(n=Count("id")))
        except DatabaseError:
            log.warning("metrics: could not count executions", exc_info=True)
            return
        for status in ACTIVE:
            family.add_metric([status], counts.get(status, 0))
        yield family


_registered = False


def register_collectors():
    global _registered
    if not _registered:
        REGISTRY.register(QueueCollector())
        _registered = True

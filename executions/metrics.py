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

# Why the web refused a caller (429) or everyone (503), as integr8s.throttling.Refusal names it.
# Every reason starts at 0, so the overview's refusals panel and rate() see the first one.
REFUSAL_REASONS = (
    "submissions",  # THROTTLE_ANON / THROTTLE_USER: runs submitted per period
    "runs_in_flight",  # MAX_ACTIVE_PER_CALLER runs queued or running
    "waits",  # MAX_ACTIVE_PER_CALLER requests waiting (wait=true, events streams)
    "queue_full",  # MAX_QUEUED: 503 for everyone
    "password_attempts",  # THROTTLE_LOGIN
    "signups",  # THROTTLE_SIGNUP
    "password_resets",  # THROTTLE_SIGNUP, per address asking for reset e-mails
)
REFUSALS = Counter(
    "integr8s_refusals_total",
    "Requests refused with 429 or 503 and Retry-After, by the limit that refused them.",
    ["reason"],
)
for _reason in REFUSAL_REASONS:
    REFUSALS.labels(reason=_reason)
# Lost runs are rare: both outcomes start at 0 so that increase() sees the first one.
for _outcome in ("requeued", "failed"):
    RECOVERED.labels(outcome=_outcome)


RUN_CPU = Histogram(
    "integr8s_execution_cpu_seconds",
    "CPU time a run used (all its processes).",
    ["backend"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RUN_MEMORY = Histogram(
    "integr8s_execution_peak_memory_bytes",
    "Peak memory of a run.",
    ["backend"],
    buckets=tuple(mib * 2**20 for mib in (4, 8, 16, 32, 64, 128, 256, 512, 1024)),
)


def observe_usage(backend: str, cpu_time_ms: int | None, peak_memory_kb: int | None) -> None:
    """What one finished run used, for the dashboards' CPU and memory panels (the worker
    calls this beside RUN_DURATION)."""
    if cpu_time_ms is not None:
        RUN_CPU.labels(backend=backend).observe(cpu_time_ms / 1000)
    if peak_memory_kb is not None:
        RUN_MEMORY.labels(backend=backend).observe(peak_memory_kb * 1024)


LISTED_S = 600  # a worker gone quiet stays listed by name this long: which one stopped


def alive_window_s() -> float:
    """A worker counts as alive while its heartbeat is this fresh (as /readyz counts them)."""
    from django.conf import settings

    return max(30, settings.WORKER_LEASE_S * 2)


class QueueCollector:
    """Queue and workers, read from the database at scrape time (every process that serves
    metrics reports the same figures: take max() across targets)."""

    def describe(self):
        # Registering calls describe(), not collect(): no query while apps are loading.
        yield GaugeMetricFamily("integr8s_executions_active", "", labels=["status"])
        yield GaugeMetricFamily("integr8s_execution_oldest_queued_seconds", "")
        yield GaugeMetricFamily("integr8s_workers_alive", "")
        yield GaugeMetricFamily("integr8s_worker_heartbeat_age_seconds", "", labels=["worker"])
        yield GaugeMetricFamily("integr8s_worker_concurrency", "", labels=["worker"])

    def collect(self):
        from django.db import DatabaseError

        try:
            families = self.read()
        except DatabaseError:
            log.warning("metrics: could not read the queue and workers", exc_info=True)
            return
        yield from families

    def read(self) -> list[GaugeMetricFamily]:
        from datetime import timedelta

        from django.db.models import Count, Min
        from django.utils import timezone

        from executions.models import ACTIVE, Execution, Worker

        now = timezone.now()
        active = GaugeMetricFamily(
            "integr8s_executions_active",
            "Executions queued or running, from the database.",
            labels=["status"],
        )
        counts = dict(Execution.objects.active().values_list("status").annotate(n=Count("id")))
        for status in ACTIVE:
            active.add_metric([status], counts.get(status, 0))

        oldest = Execution.objects.queued().aggregate(at=Min("created_at"))["at"]
        oldest_queued = GaugeMetricFamily(
            "integr8s_execution_oldest_queued_seconds",
            "How long the oldest queued execution has waited (0: none queued).",
            value=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        )

        workers = list(
            Worker.objects.filter(stopped_at=None, seen_at__gte=now - timedelta(seconds=LISTED_S))
            .order_by("name")
            .values_list("name", "seen_at", "concurrency")
        )
        fresh_since = now - timedelta(seconds=alive_window_s())
        alive = GaugeMetricFamily(
            "integr8s_workers_alive",
            "Workers whose heartbeat is fresh (as /readyz counts them).",
            value=sum(1 for _, seen_at, _ in workers if seen_at >= fresh_since),
        )
        age = GaugeMetricFamily(
            "integr8s_worker_heartbeat_age_seconds",
            "Seconds since each running worker's last heartbeat.",
            labels=["worker"],
        )
        slots = GaugeMetricFamily(
            "integr8s_worker_concurrency",
            "Runs each running worker takes at once (its slots).",
            labels=["worker"],
        )
        for name, seen_at, concurrency in workers:
            age.add_metric([name], max(0.0, (now - seen_at).total_seconds()))
            slots.add_metric([name], concurrency)
        return [active, oldest_queued, alive, age, slots]


_registered = False


def register_collectors():
    global _registered
    if not _registered:
        REGISTRY.register(QueueCollector())
        _registered = True

"""Execution metrics for Prometheus, served with django-prometheus' at /metrics.

The worker exposes the same registry on its own port (runworker --metrics-port).
"""

from prometheus_client import Counter, Gauge, Histogram

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
QUEUE_DEPTH = Gauge(
    "integr8s_executions_queued", "Executions waiting for a worker (sampled by the worker)."
)
RECOVERED = Counter(
    "integr8s_executions_recovered_total",
    "Runs whose worker was lost: requeued or failed.",
    ["outcome"],
)

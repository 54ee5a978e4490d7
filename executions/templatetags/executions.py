"""Words and numbers for execution results: what happened, and usage against the limits."""

from django import template

from executions.limits import human_bytes
from executions.models import ACTIVE, Execution, Status

register = template.Library()


@register.filter
def status_label(execution: Execution) -> str:
    """The status's label (Execution.Status), or what the run is about to be or ended with."""
    if execution.status == Status.RUNNING and execution.cancel_requested:
        return "Cancelling"
    if execution.status == Status.COMPLETED and execution.exit_code not in (0, None):
        return f"Exit {execution.exit_code}"
    return execution.get_status_display()


@register.filter
def status_tone(execution: Execution) -> str:
    """A CSS modifier for the status badge: ok, warn, bad, busy, muted."""
    if execution.status in ACTIVE:
        return "busy"
    if execution.status == Status.COMPLETED:
        return "ok" if execution.exit_code == 0 else "warn"
    if execution.status == Status.CANCELLED:
        return "muted"
    return "bad"


@register.filter
def explain(execution: Execution) -> str:
    """Why the run ended as it did, in words; "" when there is nothing to explain."""
    limits = execution.run_limits
    kind = execution.error_type
    if execution.reason:
        return execution.reason
    if kind == "memory_limit":
        return f"Stopped: used more than {human_bytes(limits.memory_bytes)} of memory."
    if kind == "timeout":
        return (
            f"Stopped: ran longer than the time limit ({limits.wall_time_s:g} s wall time, "
            f"{limits.cpu_time_s:g} s CPU time)."
        )
    if kind == "output_limit":
        return f"Stopped: printed more than {human_bytes(limits.output_bytes)} of output."
    if kind == "script_error":
        return f"The script ended with an error (exit code {execution.exit_code})."
    if kind == "system_error":
        return "The platform could not run this script. Please try again in a moment."
    if kind == "cancelled":
        return "Cancelled."
    return ""


def seconds(ms: int | None) -> str:
    if ms is None:
        return "–"
    return f"{ms / 1000:.2f} s" if ms < 10_000 else f"{ms / 1000:.1f} s"


def mebibytes(kb: int | None) -> str:
    if kb is None:
        return "–"
    return f"{kb / 1024:.1f} MiB"


@register.filter
def usage(execution: Execution) -> list[dict]:
    """Wall time, CPU time and peak memory, each with its limit (for <meter> bars)."""
    limits = execution.run_limits
    return [
        {
            "label": "Wall time",
            "used": seconds(execution.wall_time_ms),
            "limit": f"{limits.wall_time_s:g} s",
            "value": execution.wall_time_ms or 0,
            "max": int(limits.wall_time_s * 1000),
            "known": execution.wall_time_ms is not None,
        },
        {
            "label": "CPU time",
            "used": seconds(execution.cpu_time_ms),
            "limit": f"{limits.cpu_time_s:g} s",
            "value": execution.cpu_time_ms or 0,
            "max": int(limits.cpu_time_s * 1000),
            "known": execution.cpu_time_ms is not None,
        },
        {
            "label": "Peak memory",
            "used": mebibytes(execution.peak_memory_kb),
            "limit": human_bytes(limits.memory_bytes),
            "value": execution.peak_memory_kb or 0,
            "max": limits.memory_bytes // 1024,
            "known": execution.peak_memory_kb is not None,
        },
    ]


register.filter("human_bytes", human_bytes)

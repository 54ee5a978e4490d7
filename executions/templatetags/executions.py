"""Words and numbers for execution results: what happened, and usage against the limits."""

import re

from django import template

from executions.limits import human_bytes
from executions.models import ACTIVE, Execution, Status
from executions.runtimes import neutral_paths

register = template.Library()
ErrorType = Execution.ErrorType


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
    if kind == ErrorType.MEMORY_LIMIT:
        return f"Stopped: used more than {human_bytes(limits.memory_bytes)} of memory."
    if kind == ErrorType.TIMEOUT:
        return (
            f"Stopped: ran longer than the time limit ({limits.wall_time_s:g} s wall time, "
            f"{limits.cpu_time_s:g} s CPU time)."
        )
    if kind == ErrorType.OUTPUT_LIMIT:
        return f"Stopped: printed more than {human_bytes(limits.output_bytes)} of output."
    if kind == ErrorType.SCRIPT_ERROR:
        return f"The script ended with an error (exit code {execution.exit_code})."
    if kind == ErrorType.SYSTEM_ERROR:
        return "The platform could not run this script. Please try again in a moment."
    if kind == ErrorType.CANCELLED:
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


# --- errors in words (display only: how a run ended is classify()'s, never the text's) ------

SCRIPT_LINE = re.compile(r'^\s*File "/scripts/script\.py", line (\d+)', re.MULTILINE)
# The line after a traceback's last frame: the exception, whatever its class is called.
RAISED_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$")
# Without a frame to go by, only what reads as an exception's name (not a word printed).
EXCEPTION_LINE = re.compile(
    r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning))(?::\s?(.*))?$"
)
NO_INPUT = (
    "input() found no more input. Put what it should read in “Input (stdin)” before you "
    "run, one line per input() call, or tick “Interactive” and type it while it runs."
)


register.filter("neutral_paths", neutral_paths)


@register.filter
def error_summary(execution: Execution) -> dict[str, str] | None:
    """{"headline": "NameError at line 3: name 'x' is not defined", "hint": ...} from the
    last exception in stderr, or None when it names none."""
    lines = (execution.errors or "").rstrip().splitlines()
    found = None
    frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
    if frames:
        # The last traceback's exception: the first unindented line after its last frame
        # (one it was handling came before; a note may come after).
        after = (i for i in range(frames[-1] + 1, len(lines)) if not lines[i].startswith(" "))
        i = next(after, -1)
        found = RAISED_LINE.match(lines[i]) if i >= 0 else None
    if found is None:
        for i in range(len(lines) - 1, max(len(lines) - 40, -1), -1):
            if found := EXCEPTION_LINE.match(lines[i]):
                break
        else:
            return None
    name, message = found.group(1), (found.group(2) or "").strip()
    numbers = SCRIPT_LINE.findall("\n".join(lines[:i]))
    where = f" at line {numbers[-1]}" if numbers else ""
    headline = f"{name}{where}" + (f": {message}" if message else "")
    return {"headline": headline, "hint": NO_INPUT if name == "EOFError" else ""}


@register.filter
def running_for(execution: Execution) -> str:
    """How long a run has been going, for the page while it runs ("" before it started)."""
    if execution.started_at is None:
        return ""
    from django.utils import timezone

    elapsed = max((timezone.now() - execution.started_at).total_seconds(), 0.0)
    return f"{elapsed:.1f} s"


# How often the page asks for a run's live part: its output while it runs, often enough to
# read as live; while it waits for a worker only its start can change, so a slower tick (on a
# busy site, where runs queue for seconds, most of the page's polls are of queued runs).
POLL_RUNNING_MS = 300
POLL_QUEUED_MS = 1000


@register.filter
def poll_ms(execution: Execution) -> int:
    return POLL_QUEUED_MS if execution.status == Execution.Status.QUEUED else POLL_RUNNING_MS

"""The contract every sandbox backend keeps: a RunSpec in, a RunResult out, cancellable."""

import threading
from dataclasses import asdict, dataclass, field

from executions.limits import Limits
from executions.runtimes import Runtime

# Statuses and error types a run can end with (the same words as Execution.Status/ErrorType).
COMPLETED, FAILED, TIMEOUT, CANCELLED = "completed", "failed", "timeout", "cancelled"
SCRIPT_ERROR, MEMORY_LIMIT, OUTPUT_LIMIT = "script_error", "memory_limit", "output_limit"
SYSTEM_ERROR = "system_error"


@dataclass(frozen=True)
class RunSpec:
    script: str
    runtime: Runtime
    limits: Limits
    stdin: str = ""
    run_id: str = ""  # the execution id; names cgroups, pods and log lines


@dataclass
class RunResult:
    status: str
    exit_code: int | None = None
    error_type: str | None = None
    output: str = ""
    errors: str = ""
    output_truncated: bool = False
    errors_truncated: bool = False
    wall_time_ms: int | None = None
    cpu_time_ms: int | None = None
    peak_memory_kb: int | None = None
    python_version: str = ""
    reason: str = ""  # what happened, in words a user understands, when not a plain completion
    extra: dict = field(default_factory=dict)  # backend-specific details for logs

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("extra")
        return data


def system_error(spec: RunSpec, reason: str, **kw) -> RunResult:
    return RunResult(
        status=FAILED,
        error_type=SYSTEM_ERROR,
        reason=reason,
        python_version=spec.runtime.version,
        **kw,
    )


class Backend:
    """A place to run one script. Implementations must be safe to call from several threads."""

    name = "base"

    def run(self, spec: RunSpec, cancel: threading.Event) -> RunResult:
        """Run spec to its end, or until cancel is set (then return status cancelled).

        Never raises for anything the script does; platform failures come back as
        status failed / error_type system_error with a reason.
        """
        raise NotImplementedError

    def cleanup_stale(self, live_run_ids: set[str] | None = None) -> int:
        """Remove what earlier runs left behind (after a crash); return how many were removed.

        live_run_ids, when given, are runs still in flight elsewhere that must be kept.
        """
        return 0

    def manifests(self, spec: RunSpec) -> list[dict]:
        """The objects this backend would create for spec (for --dry-run); [] if none."""
        return []

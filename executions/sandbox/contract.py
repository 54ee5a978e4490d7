"""The contract every sandbox backend keeps.

A backend takes a RunSpec and reports Facts: what happened, as the platform itself saw it
(exit status, the cgroup's OOM kills, CPU used, the wall clock, whether the output cap was hit,
whether the platform failed), never read from anything the script can write. One classify()
(executions.sandbox.classify) turns Facts into the RunResult that is stored, with the same
words for every backend. Nothing here imports Django: backends are plain Python below this line.
"""

import os
import threading
from dataclasses import asdict, dataclass, field
from typing import Protocol

from executions.limits import Limits

# Statuses and error types a run can end with (the same words as Execution.Status/ErrorType).
COMPLETED, FAILED, TIMEOUT, CANCELLED = "completed", "failed", "timeout", "cancelled"
SCRIPT_ERROR, MEMORY_LIMIT, OUTPUT_LIMIT = "script_error", "memory_limit", "output_limit"
PROCESS_LIMIT = "process_limit"
SYSTEM_ERROR = "system_error"


@dataclass(frozen=True)
class Runtime:
    version: str  # "3.12"
    executable: str = ""  # local interpreter path
    image: str = ""  # container image for the kubernetes backend

    @property
    def prefix(self) -> str:
        """The interpreter's installation prefix (what the sandbox must bind read-only)."""
        real = os.path.realpath(self.executable)
        return os.path.dirname(os.path.dirname(real))


@dataclass(frozen=True)
class RunSpec:
    script: str
    runtime: Runtime
    limits: Limits
    stdin: str = ""
    run_id: str = ""  # the execution id; names cgroups, pods and log lines
    interactive: bool = False  # stdin stays open after `stdin` for input sent while it runs
    # Input files, (name, contents): read-only in INPUTS_DIR (names checked by the caller).
    files: tuple[tuple[str, bytes], ...] = ()


INPUTS_DIR = "/tmp/inputs"  # where every backend puts a run's input files, read-only


class Events(Protocol):
    """What a backend tells while a run goes, and what it asks (both from the run's thread)."""

    def output(self, stream: str, text: str) -> None:
        """Text the script printed on stream ("stdout" or "stderr"), in the order printed,
        within the output cap (what the result will hold, as it grows)."""

    def poll(self) -> bytes | None:
        """Called about every 0.1 s while the run goes: input to send the script now (b""
        ends its input), or None for nothing new. Also the moment to pass output on."""

    def waiting_for_input(self, waiting: bool) -> None:
        """An interactive run's script began (True) or stopped (False) waiting for input:
        blocked reading its stdin with nothing sent left to read. Told as it changes."""


class NoEvents:
    """Nobody is watching: output is only in the result, no input comes."""

    def output(self, stream: str, text: str) -> None:
        pass

    def poll(self) -> bytes | None:
        return None

    def waiting_for_input(self, waiting: bool) -> None:
        pass


@dataclass
class Facts:
    """What the platform saw of one run. Every field comes from the kernel, the cgroup, the
    backend's own clock or a channel the script cannot write (the sandbox's start signal, the
    in-pod wrapper's envelope): a script can choose its exit code and its output, nothing else.
    """

    started: bool = False  # the interpreter started and took the script
    platform_error: str = ""  # the platform failed: what happened, a sentence; "" if it did not
    exit_code: int | None = None  # the script's exit code, or 128 + the signal that killed it
    cancelled: bool = False  # stopped on request
    wall_timeout: bool = False  # stopped at the wall-clock limit
    cpu_exceeded: bool = False  # the run's CPU time (all its processes) reached the limit
    oom_kills: int = 0  # processes the memory limit killed
    process_limit_hit: bool = False  # a fork or thread was refused at the process limit
    tmp_full: bool = False  # /tmp reached its size limit
    waiting_for_input: bool = False  # at the wall clock, the script was blocked reading stdin
    output_capped: bool = False  # stopped for printing more than the output cap
    stdout: bytes = b""  # what was kept of each stream (the backend cuts at the cap)
    stderr: bytes = b""
    stdout_cut: bool = False  # the stream printed more than was kept
    stderr_cut: bool = False
    files: list[tuple[str, bytes]] = field(default_factory=list)  # from /tmp/outputs, capped
    files_capped: bool = False  # there were more (or bigger) output files than the caps
    wall_time_ms: int | None = None
    cpu_time_ms: int | None = None
    peak_memory_kb: int | None = None
    extra: dict = field(default_factory=dict)  # backend details for logs, never shown


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
    files: list[tuple[str, bytes]] = field(default_factory=list)  # (name, contents)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("extra")
        data["files"] = [{"name": name, "size": len(body)} for name, body in self.files]
        return data


class Reservation(Protocol):
    def release(self) -> None: ...


class Unlimited:
    """Room that is always there: a backend whose runs go elsewhere (a cluster) has no slots."""

    def release(self) -> None:
        pass


class Backend:
    """A place to run one script. Implementations must be safe to call from several threads."""

    name = "base"

    def reserve(self) -> Reservation | None:
        """Room for one more run, held until released; None when there is none now. The
        worker reserves before it claims, so a run is never claimed by a worker that cannot
        start it."""
        return Unlimited()

    def run(
        self, spec: RunSpec, cancel: threading.Event, events: Events | None = None
    ) -> RunResult:
        """Run spec to its end, or until cancel is set (then return status cancelled);
        events hears its output as it is printed and is asked for input.

        Never raises for anything the script does; platform failures come back as
        status failed / error_type system_error with a reason.
        """
        raise NotImplementedError

    def cleanup_stale(self, live_run_ids: set[str] | None = None) -> int:
        """Remove what earlier runs of this installation left behind (after a crash); return
        how many were removed. live_run_ids, when given, are runs still in flight elsewhere
        that must be kept."""
        return 0

    def manifests(self, spec: RunSpec) -> list[dict]:
        """The objects this backend would create for spec (for --dry-run); [] if none."""
        return []

    def close(self) -> None:
        """Let go of what the backend keeps between runs (warm sandboxes, connections)."""

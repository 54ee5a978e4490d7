"""How a run ended: one decision, made from Facts, for every backend.

classify() names the status, the error type and the reason in words; result() also turns the
captured bytes into the text that is stored, with the output cap counted on that text.
"""

import signal
from dataclasses import dataclass

from executions.limits import Limits, human_bytes
from executions.sandbox.contract import (
    CANCELLED,
    COMPLETED,
    FAILED,
    MEMORY_LIMIT,
    OUTPUT_LIMIT,
    PROCESS_LIMIT,
    SCRIPT_ERROR,
    SYSTEM_ERROR,
    TIMEOUT,
    Facts,
    RunResult,
    RunSpec,
)

# PostgreSQL's text cannot hold NUL; the stored text shows it as the symbol for NUL.
NUL, NUL_SHOWN = "\x00", "\u2400"


@dataclass(frozen=True)
class Verdict:
    status: str
    error_type: str | None
    reason: str


def classify(facts: Facts, limits: Limits) -> Verdict:
    """Status, error type and reason for a run, from what the platform saw (never from the
    script's output: a script that prints "MemoryError" or exits 137 still only fails)."""
    code = facts.exit_code
    failed = code != 0  # not ended on its own with exit code 0 (None: killed before)
    if facts.platform_error:
        return Verdict(FAILED, SYSTEM_ERROR, facts.platform_error)
    if facts.cancelled:
        return Verdict(CANCELLED, CANCELLED, "Cancelled before it finished.")
    if not facts.started:
        return Verdict(
            FAILED,
            SYSTEM_ERROR,
            "The sandbox could not run the script: it did not start within "
            f"{limits.wall_time_s:g} s."
            if facts.wall_timeout
            else "The sandbox could not run the script: it ended before the script started.",
        )
    if facts.output_capped:
        return Verdict(
            FAILED,
            OUTPUT_LIMIT,
            f"Stopped: printed more than {human_bytes(limits.output_bytes)} of output "
            "(stdout and stderr together).",
        )
    # "Stopped" only when the platform did stop the run: its process was killed (137) or its
    # time ran out. A limit met by a part of the run (a child killed at the memory limit, a
    # fork refused) that the script then ended on its own is the script's error, told so.
    stopped = code == 128 + signal.SIGKILL or facts.wall_timeout
    memory = human_bytes(limits.memory_bytes)
    if facts.oom_kills and stopped:
        return Verdict(FAILED, MEMORY_LIMIT, f"Stopped: used more than {memory} of memory.")
    if facts.cpu_exceeded:
        return Verdict(
            TIMEOUT, TIMEOUT, f"Stopped: used more than {limits.cpu_time_s:g} s of CPU time."
        )
    # The platform never stops a run at the process limit (a fork is refused, the run goes
    # on): a fork bomb is stopped by its wall clock, and named by the limit that held it. A
    # SIGKILL without a timeout (or an OOM kill) is the script's own.
    if facts.process_limit_hit and facts.wall_timeout:
        return Verdict(
            FAILED,
            PROCESS_LIMIT,
            f"Stopped: tried to run more than {limits.processes} processes and threads at "
            "once (the process limit).",
        )
    if facts.wall_timeout and facts.waiting_for_input:
        return Verdict(
            TIMEOUT,
            TIMEOUT,
            f"Stopped: ran longer than {limits.wall_time_s:g} s while waiting for input "
            "(it was reading stdin and nothing more was sent).",
        )
    if facts.wall_timeout:
        return Verdict(TIMEOUT, TIMEOUT, f"Stopped: ran longer than {limits.wall_time_s:g} s.")
    if facts.files_capped:
        return Verdict(
            FAILED,
            OUTPUT_LIMIT,
            f"Its output files were over the limit ({limits.output_files} files, "
            f"{human_bytes(limits.files_bytes)} together, in /tmp/outputs): only the first that "
            "fit were kept.",
        )
    if failed:
        notes = []
        if facts.oom_kills:
            notes.append(f"one of its processes was stopped at the {memory} memory limit")
        if facts.process_limit_hit:
            notes.append(f"a new process or thread was refused at the limit of {limits.processes}")
        if facts.tmp_full:
            notes.append(f"/tmp was full (it holds at most {human_bytes(limits.tmp_bytes)})")
        why = exit_reason(code)
        if notes:
            why = f"{why[:-1]}: {'; '.join(notes)}."
        return Verdict(COMPLETED, SCRIPT_ERROR, why)
    return Verdict(COMPLETED, None, "")


def exit_reason(code: int | None) -> str:
    if code is not None and code > 128:
        try:
            return f"The script was killed by signal {signal.Signals(code - 128).name}."
        except ValueError:
            pass
    return f"The script ended with an error (exit code {code})."


def stored_text(stdout: bytes, stderr: bytes, cap: int) -> tuple[str, str, bool, bool]:
    """stdout and stderr as stored: UTF-8 (invalid bytes replaced), NUL shown as ␀, and at
    most cap bytes together *as stored* (a replacement character is 3 bytes), each stream
    keeping a share of the cap in proportion to what it printed. Also whether each was cut."""
    out = stdout.decode("utf-8", "replace").replace(NUL, NUL_SHOWN)
    err = stderr.decode("utf-8", "replace").replace(NUL, NUL_SHOWN)
    out_size, err_size = len(out.encode()), len(err.encode())
    if out_size + err_size <= cap:
        return out, err, False, False
    out_room = min(out_size, max(cap - err_size, cap * out_size // (out_size + err_size)))
    err_room = cap - out_room
    out_cut, err_cut = _cut(out, out_room), _cut(err, err_room)
    return out_cut, err_cut, out_cut != out, err_cut != err


def _cut(text: str, size: int) -> str:
    """The longest prefix of text whose UTF-8 is at most size bytes."""
    return text.encode()[:size].decode("utf-8", "ignore")


def result(spec: RunSpec, facts: Facts, backend: str = "") -> RunResult:
    """The RunResult stored for a run: classify()'s verdict, the measured usage and the text."""
    out, err, out_cut, err_cut = stored_text(facts.stdout, facts.stderr, spec.limits.output_bytes)
    # The cap counts the stored text: invalid bytes stored as U+FFFD can pass it.
    facts.output_capped = facts.output_capped or out_cut or err_cut
    verdict = classify(facts, spec.limits)
    ran = verdict.error_type != SYSTEM_ERROR
    return RunResult(
        status=verdict.status,
        error_type=verdict.error_type,
        reason=verdict.reason,
        exit_code=facts.exit_code if ran else None,
        output=out,
        errors=err,
        output_truncated=out_cut or facts.stdout_cut,
        errors_truncated=err_cut or facts.stderr_cut,
        wall_time_ms=facts.wall_time_ms,
        cpu_time_ms=facts.cpu_time_ms,
        peak_memory_kb=facts.peak_memory_kb,
        python_version=spec.runtime.version,
        extra={"backend": backend, **facts.extra},
        files=facts.files,
    )


def platform_failure(spec: RunSpec, why: str, backend: str = "") -> RunResult:
    """The result of a run the platform could not carry out (why: a sentence, in words)."""
    return result(spec, Facts(platform_error=why), backend)

"""How a run ended: classify() from Facts, the stored text, and the contract's boundaries."""

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from executions.limits import KIB, MIB, Limits
from executions.sandbox import BACKENDS
from executions.sandbox.classify import classify, result, stored_text
from executions.sandbox.contract import Facts, RunSpec, Runtime

ROOT = Path(__file__).resolve().parent.parent
LIMITS = Limits(wall_time_s=5, cpu_time_s=2, memory_bytes=128 * MIB, processes=64)
SPEC = RunSpec(script="", runtime=Runtime("3.12"), limits=LIMITS)


def verdict(**facts):
    v = classify(Facts(started=True, **facts), LIMITS)
    return v.status, v.error_type, v.reason


@pytest.mark.parametrize(
    "facts, expected",
    [
        (dict(exit_code=0), ("completed", None, "")),
        (
            dict(exit_code=3),
            ("completed", "script_error", "The script ended with an error (exit code 3)."),
        ),
        (
            dict(exit_code=137),
            ("completed", "script_error", "The script was killed by signal SIGKILL."),
        ),
        (
            dict(exit_code=152),
            ("completed", "script_error", "The script was killed by signal SIGXCPU."),
        ),
        (
            dict(exit_code=137, wall_timeout=True),
            ("timeout", "timeout", "Stopped: ran longer than 5 s."),
        ),
        (
            dict(exit_code=137, cpu_exceeded=True),
            ("timeout", "timeout", "Stopped: used more than 2 s of CPU time."),
        ),
        (
            dict(exit_code=137, oom_kills=1),
            ("failed", "memory_limit", "Stopped: used more than 128 MiB of memory."),
        ),
        (
            dict(exit_code=137, output_capped=True),
            (
                "failed",
                "output_limit",
                "Stopped: printed more than 1 MiB of output (stdout and stderr together).",
            ),
        ),
        (
            dict(exit_code=137, wall_timeout=True, process_limit_hit=True),
            (
                "failed",
                "process_limit",
                "Stopped: tried to run more than 64 processes and threads at once "
                "(the process limit).",
            ),
        ),
        (
            dict(exit_code=1, tmp_full=True),
            (
                "completed",
                "script_error",
                "The script ended with an error (exit code 1): /tmp was full (it holds at most "
                "16 MiB).",
            ),
        ),
        (dict(exit_code=0, tmp_full=True, process_limit_hit=True), ("completed", None, "")),
        (
            dict(exit_code=137, cancelled=True, wall_timeout=True),
            ("cancelled", "cancelled", "Cancelled before it finished."),
        ),
    ],
)
def test_facts_decide_the_verdict(facts, expected):
    assert verdict(**facts) == expected


def test_a_platform_failure_is_the_platform_s_whatever_the_script_printed():
    v = classify(Facts(started=False, platform_error="The sandbox could not start: x."), LIMITS)
    assert (v.status, v.error_type, v.reason) == (
        "failed",
        "system_error",
        "The sandbox could not start: x.",
    )
    # Ended before its start signal: never the script's fault, whatever its exit code says.
    v = classify(Facts(started=False, exit_code=1), LIMITS)
    assert (v.status, v.error_type) == ("failed", "system_error")
    v = classify(Facts(started=False, wall_timeout=True), LIMITS)
    assert "did not start within 5 s" in v.reason


def test_a_limit_met_by_part_of_a_run_that_then_ended_itself_is_not_a_stop():
    """A child killed at the memory limit, a fork refused: the platform stopped nothing, the
    script ended on its own; the reason says both."""
    status, error_type, reason = verdict(exit_code=1, oom_kills=1, process_limit_hit=True)
    assert (status, error_type) == ("completed", "script_error")
    assert reason == (
        "The script ended with an error (exit code 1): one of its processes was stopped at the "
        "128 MiB memory "
        "limit; a new process or thread was refused at the limit of 64."
    )


def test_what_a_script_prints_never_changes_the_verdict():
    for stderr in (b"bwrap: Can't mount proc\n", b"sandbox: cannot join\n", b"MemoryError\n"):
        r = result(SPEC, Facts(started=True, exit_code=1, stderr=stderr))
        assert (r.status, r.error_type) == ("completed", "script_error")


def test_stored_text_is_capped_as_stored():
    # 1000 invalid bytes are 3000 bytes of U+FFFD once stored.
    out, err, out_cut, err_cut = stored_text(b"\xff" * 1000, b"", 1024)
    assert len(out.encode()) <= 1024 and out_cut and not err_cut
    out, err, out_cut, err_cut = stored_text(b"a" * 900, b"b" * 900, 1000)
    assert len(out.encode()) + len(err.encode()) <= 1000 and out_cut and err_cut
    assert out and err  # each stream keeps a share
    assert stored_text(b"a\x00b", b"", KIB)[0] == "a\u2400b"


def test_a_result_over_the_stored_cap_is_an_output_limit():
    r = result(SPEC, Facts(started=True, exit_code=0, stdout=b"\xff" * (MIB // 2)))
    assert (r.status, r.error_type, r.output_truncated) == ("failed", "output_limit", True)
    assert len(r.output.encode()) <= MIB


def test_both_backends_use_the_same_words():
    """The Kubernetes backend's facts go through the same classify(): same reasons."""
    from executions.sandbox.kubernetes import KubernetesBackend

    backend = KubernetesBackend(api=object())
    pod = {"status": {"phase": "Succeeded"}, "spec": {}}
    nonce = "n"

    def envelope(reason: str, code: int) -> bytes:
        body = f'{{"exit_code": {code}, "reason": "{reason}", "cpu_time_ms": 2100}}'
        return f"{nonce}:R:{base64.b64encode(body.encode()).decode()}\n".encode()

    pod = {
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [{"name": "script", "state": {"terminated": {"exitCode": 0}}}],
        },
    }
    k8s = backend.classify(SPEC, pod, envelope("cpu_time", 137), nonce)
    local = result(SPEC, Facts(started=True, exit_code=137, cpu_exceeded=True))
    assert (k8s.status, k8s.error_type, k8s.reason) == (
        local.status,
        local.error_type,
        local.reason,
    )


def test_nothing_below_the_registry_imports_django():
    """The contract, classify and every backend import with Django made unimportable."""
    modules = ["executions.sandbox.contract", "executions.sandbox.classify"] + list(
        BACKENDS.values()
    )
    code = "import sys; sys.modules['django'] = None\n" + "".join(f"import {m}\n" for m in modules)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

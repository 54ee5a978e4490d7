"""The in-pod wrapper (executions/sandbox/k8s_wrapper.py), run for real as a local process.

Each run lays out what the pod's ConfigMap mount holds (script.py, stdin, wrapper.py) in a
directory, starts the wrapper from the source tree with the pod's own env (INTEGR8S_NONCE,
INTEGR8S_LIMITS, from KubernetesBackend.manifests) and reads its stdout as the pod log, which the
backend's own parse_envelope and classify turn into a RunResult.

The pod's command is `python3 -u -S /integr8s/wrapper.py`; here -S is left out so that
coverage.py (patch = ["subprocess"], started from a .pth file that -S would skip) measures the
wrapper. One test runs the exact command on the ConfigMap's copy. Runs that need what a pod has
and a test process may not (PID 1 of a PID namespace, a non-root uid for RLIMIT_NPROC and
PR_SET_DUMPABLE to mean anything) use unshare and setuid when available, and skip otherwise.
"""

import base64
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from executions.limits import MIB, Limits
from executions.runtimes import Runtime
from executions.sandbox import k8s_wrapper
from executions.sandbox.base import COMPLETED, FAILED, SCRIPT_ERROR, SYSTEM_ERROR, TIMEOUT
from executions.sandbox.base import OUTPUT_LIMIT, RunResult, RunSpec
from executions.sandbox.kubernetes import (
    CODE_DIR,
    RUN_AS,
    KubernetesBackend,
    log_cap,
    parse_envelope,
)

WRAPPER = Path(k8s_wrapper.__file__).resolve()
RUNTIME = Runtime("3.13", image="python:3.13-slim")
NONCE = "0123456789abcdef0123456789abcdef"
PYENV = Path("/root/.pyenv/versions")
OLD_PYTHONS = {
    "3.8": PYENV / "3.8.18/bin/python3.8",
    "3.9": PYENV / "3.9.18/bin/python3.9",
}

# Runs the wrapper as a python3-minimal would: json, resource and ctypes cannot be imported.
LAUNCHER = """\
import runpy, sys
path, hidden = sys.argv[1], sys.argv[2].split(",")
for name in hidden:
    sys.modules[name] = None
sys.argv = [path]
runpy.run_path(path, run_name="__main__")
"""
MINIMAL = ("json", "resource", "ctypes")


@functools.cache
def backend() -> KubernetesBackend:
    return KubernetesBackend(api=object(), namespace="integr8s-executions", installation="t")


@functools.cache
def can_unshare() -> bool:
    if not shutil.which("unshare"):
        return False
    try:
        done = subprocess.run(
            ["unshare", "--pid", "--fork", "--mount-proc", "true"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def as_nobody():
    os.setgroups([])
    os.setgid(RUN_AS)
    os.setuid(RUN_AS)


@dataclass
class Run:
    result: RunResult  # what the backend makes of it
    envelope: dict | None  # the wrapper's R line, as parsed by the backend
    log: bytes  # the pod log: everything the wrapper wrote on stdout
    returncode: int  # the wrapper's (the container's) exit code
    stderr: bytes  # the wrapper's own stderr (a pod's log would mix it in; nothing expected)
    elapsed: float
    code_dir: Path


def pod_files(code_dir: Path, script: str, stdin: str = "", **limits):
    """The ConfigMap mount and the container of the pod a run would create."""
    spec = RunSpec(script=script, runtime=RUNTIME, limits=Limits(**limits), stdin=stdin)
    pod, config_map = backend().manifests(spec, nonce=NONCE)
    code_dir.mkdir(parents=True, exist_ok=True)
    for name, text in config_map["data"].items():
        (code_dir / name).write_text(text)
    return spec, pod["spec"]["containers"][0]


def run_wrapper(
    code_dir: Path,
    script: str,
    stdin: str = "",
    *,
    python: str = sys.executable,
    hide: tuple = (),
    pid1: bool = False,
    nobody: bool = False,
    exact: bool = False,
    signal_after: tuple | None = None,
    timeout: float = 30,
    **limits,
) -> Run:
    """Run the wrapper as the pod would, and classify its log as the backend does.

    hide: modules made unimportable (a python3-minimal); pid1: run it as PID 1 of a new PID
    namespace; nobody: run it as the pod's uid; exact: the pod's very command, -S included, on
    the ConfigMap's copy of the wrapper; signal_after: (marker, signum) sends signum to the
    wrapper once the log holds marker.
    """
    spec, container = pod_files(code_dir, script, stdin, **limits)
    command = list(container["command"])
    assert command == ["python3", "-u", "-S", f"{CODE_DIR}/wrapper.py"]
    if exact:
        argv = [python, "-u", "-S", str(code_dir / "wrapper.py")]
    elif hide:
        argv = [python, "-u", "-c", LAUNCHER, str(WRAPPER), ",".join(hide)]
    else:
        argv = [python, "-u", str(WRAPPER)]
    if pid1:
        argv = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *argv]
    env = {e["name"]: e["value"] for e in container["env"]}
    env["INTEGR8S_CODE_DIR"] = str(code_dir)
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    if not nobody:  # coverage.py's settings for measured subprocesses (it cannot write as nobody)
        env.update({k: v for k, v in os.environ.items() if k.startswith("COVERAGE_")})
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=as_nobody if nobody else None,
    )
    if signal_after:
        marker, signum = signal_after
        log = b""
        os.set_blocking(proc.stdout.fileno(), False)
        while b"".join(parse_envelope(log, NONCE)[:2]).find(marker) < 0:
            assert time.monotonic() - started < timeout, log
            chunk = proc.stdout.read() or b""
            log += chunk
            time.sleep(0.01)
        proc.send_signal(signum)
        os.set_blocking(proc.stdout.fileno(), True)
        rest, stderr = proc.communicate(timeout=timeout)
        log += rest
    else:
        log, stderr = proc.communicate(timeout=timeout)
    elapsed = time.monotonic() - started
    rc = proc.returncode
    pod = {
        "status": {
            "phase": "Succeeded" if rc == 0 else "Failed",
            "containerStatuses": [
                {
                    "name": "script",
                    "state": {
                        "terminated": {"exitCode": rc, "reason": "Completed" if rc == 0 else "Error"}
                    },
                }
            ],
        }
    }
    assert len(log) < log_cap(spec), "the wrapper wrote more than the backend reads"
    result = backend().classify(spec, pod, log, NONCE)
    envelope = parse_envelope(log, NONCE)[2]
    return Run(result, envelope, log, rc, stderr, elapsed, code_dir)


@pytest.fixture
def run(tmp_path):
    return functools.partial(run_wrapper, tmp_path / "integr8s")


# --- what every run reports -------------------------------------------------------------------


def test_hello_world(run):
    r = run("print('hello, world')\n")
    assert r.returncode == 0 and r.stderr == b""
    assert r.result.status == COMPLETED and r.result.error_type is None
    assert r.result.exit_code == 0 and r.result.reason == ""
    assert r.result.output == "hello, world\n" and r.result.errors == ""
    assert not r.result.output_truncated and not r.result.errors_truncated
    assert 0 <= r.result.wall_time_ms < r.elapsed * 1000 + 1
    assert r.envelope["signal"] is None and r.envelope["reason"] is None
    # every line of the log is an envelope line of this run: nothing else reaches the log
    lines = r.log.rstrip(b"\n").split(b"\n")
    assert all(line.startswith(NONCE.encode() + b":") for line in lines)
    assert lines[-1].startswith(NONCE.encode() + b":R:")

"""The in-pod wrapper (executions/sandbox/kubernetes/wrapper.py), run for real as a local process.

Each run lays out what the pod's ConfigMap mount holds (script.py, stdin, wrapper.py, from
KubernetesBackend.manifests) in a directory, starts the wrapper from the source tree with the
pod's env (INTEGR8S_NONCE, INTEGR8S_LIMITS; INTEGR8S_CODE_DIR points at the directory instead of
/integr8s) and takes its stdout as the pod log, which the backend's own parse_envelope and
classify turn into a RunResult.

The pod's command is `python3 -u -S /integr8s/wrapper.py`. Most runs here start the same file
through LAUNCHER instead, which runs it as __main__ just the same but lets coverage.py measure
it (its subprocess patch starts from a .pth file, which -S skips, and it matches
--cov=<module> by module name) and can make modules unimportable, as in a trimmed Python.
test_the_pods_exact_command and the old-interpreter tests run the exact command.

Some things a pod has and a test process may not: PID 1 of a PID namespace (unshare, as root)
and a non-root uid, without which RLIMIT_NPROC and PR_SET_DUMPABLE mean nothing (as root the
wrapper is started as the pod's uid, 65534). Tests needing them skip when they cannot have them.
"""

import base64
import errno
import functools
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from executions.limits import MIB, Limits
from executions.runtimes import Runtime
from executions.sandbox.contract import (
    COMPLETED,
    FAILED,
    MEMORY_LIMIT,
    OUTPUT_LIMIT,
    SCRIPT_ERROR,
    SYSTEM_ERROR,
    TIMEOUT,
    RunResult,
    RunSpec,
)
from executions.sandbox.kubernetes import (
    CODE_DIR,
    RUN_AS,
    KubernetesBackend,
    log_cap,
    parse_envelope,
)
from executions.sandbox.kubernetes import wrapper as k8s_wrapper

WRAPPER = Path(k8s_wrapper.__file__).resolve()
RUNTIME = Runtime("3.13", image="python:3.13-slim")
NONCE = "0123456789abcdef0123456789abcdef"
OLD_PYTHONS = {
    "3.8": "/root/.pyenv/versions/3.8.18/bin/python3.8",
    "3.9": "/root/.pyenv/versions/3.9.18/bin/python3.9",
}
ROOT = os.geteuid() == 0

# Runs the wrapper file as __main__, as `python3 wrapper.py` does, after making the modules
# named in argv[2] unimportable and running the setup code in argv[3] (fault injection). The
# __spec__ names it as the module it is in the source tree: coverage.py knows a script's
# __main__ only by its file name, so --cov=executions.sandbox.kubernetes.wrapper would not match it.
LAUNCHER = """\
import importlib.util, sys
path, hidden, setup = sys.argv[1:4]
for name in filter(None, hidden.split(",")):
    sys.modules[name] = None
exec(setup, {})
sys.argv = [path]
with open(path) as f:
    code = compile(f.read(), path, "exec")
spec = importlib.util.spec_from_file_location("executions.sandbox.kubernetes.wrapper", path)
main = {"__name__": "__main__", "__file__": path, "__spec__": spec, "__builtins__": __builtins__}
exec(code, main)
"""
# What a trimmed interpreter may lack and the wrapper can do without (prlimit, /proc). Without
# ctypes (Debian's python3-minimal) it runs no script at all: test_without_ctypes_*.
TRIMMED = ("json", "resource")


@functools.cache
def backend() -> KubernetesBackend:
    return KubernetesBackend(api=object(), namespace="integr8s-executions", installation="t")


@functools.cache
def can_unshare() -> bool:
    if not ROOT or not shutil.which("unshare"):
        return False
    try:
        done = subprocess.run(
            ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def as_pod_user():
    os.setgroups([])
    os.setgid(RUN_AS)
    os.setuid(RUN_AS)


@dataclass
class Run:
    result: RunResult  # what the backend makes of it
    envelope: dict | None  # the wrapper's result line, as the backend parses it
    log: bytes  # the pod log: everything the wrapper wrote on its stdout
    returncode: int  # the wrapper's, which is the container's exit code
    stderr: bytes  # the wrapper's own stderr (it writes nothing there)
    elapsed: float


def run_wrapper(
    code_dir: Path,
    script: str,
    stdin: str = "",
    *,
    python: str = sys.executable,
    hide: tuple = (),
    setup: str = "",
    exact: bool = False,
    pid1: bool = False,
    pod_user: bool = False,
    signal_after: tuple | None = None,
    prepare=None,
    timeout: float = 30,
    **limits,
) -> Run:
    """Run the wrapper as the pod would, and classify its log as the backend does.

    hide: modules made unimportable; setup: code run first in the wrapper's process; exact: the
    pod's very command, -S included, on the ConfigMap's copy of the wrapper; pid1: as PID 1 of a
    new PID namespace; pod_user: as the pod's uid (when root); signal_after: (marker, signum)
    sends signum to the wrapper once the script has printed marker; prepare: called with the
    code directory once laid out. limits: Limits fields.
    """
    spec = RunSpec(script=script, runtime=RUNTIME, limits=Limits(**limits), stdin=stdin)
    pod, config_map = backend().manifests(spec, nonce=NONCE)
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["python3", "-u", "-S", f"{CODE_DIR}/wrapper.py"]
    code_dir.mkdir(parents=True, exist_ok=True)
    for name, text in config_map["data"].items():
        (code_dir / name).write_text(text)
    if prepare:
        prepare(code_dir)
    as_nobody = pod_user and ROOT
    wrapper = code_dir / "wrapper.py" if (exact or as_nobody) else WRAPPER
    if exact:
        argv = [python, "-u", "-S", str(wrapper)]
    else:
        argv = [python, "-u", "-c", LAUNCHER, str(wrapper), ",".join(hide), setup]
    if pid1:
        argv = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *argv]
    env = {e["name"]: e["value"] for e in container["env"]}
    env["INTEGR8S_CODE_DIR"] = str(code_dir)
    env["INTEGR8S_OUTPUTS"] = str(code_dir / "outputs")  # not the host's /tmp/outputs
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    if python == sys.executable and not exact and not as_nobody:
        # coverage.py's settings for the subprocesses it measures (it could not save as nobody)
        env.update({k: v for k, v in os.environ.items() if k.startswith("COVERAGE_")})

    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=as_pod_user if as_nobody else None,
    )
    try:
        log = b""
        if signal_after:
            marker, signum = signal_after
            os.set_blocking(proc.stdout.fileno(), False)
            while marker not in parse_envelope(log, NONCE)[0]:
                assert time.monotonic() - started < timeout and proc.poll() is None, log
                log += proc.stdout.read() or b""
                time.sleep(0.01)
            proc.send_signal(signum)
            os.set_blocking(proc.stdout.fileno(), True)
        rest, stderr = proc.communicate(timeout=timeout)
        log += rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    elapsed = time.monotonic() - started

    rc = proc.returncode
    terminated = {"exitCode": rc, "reason": "Completed" if rc == 0 else "Error"}
    pod_status = {
        "status": {
            "phase": "Succeeded" if rc == 0 else "Failed",
            "containerStatuses": [{"name": "script", "state": {"terminated": terminated}}],
        }
    }
    assert len(log) < log_cap(spec), "the wrapper wrote more than the backend would read"
    result = backend().classify(spec, pod_status, log, NONCE)
    return Run(result, parse_envelope(log, NONCE)[2], log, rc, stderr, elapsed)


@pytest.fixture
def run(tmp_path):
    return functools.partial(run_wrapper, tmp_path / "integr8s")


@functools.cache
def pod_python() -> str | None:
    """An interpreter the pod's uid can run: this one, unless root's (in /root, say)."""
    if not ROOT:
        return sys.executable
    for python in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        try:
            done = subprocess.run(
                [python, "-c", "import os; os.fork"],
                preexec_fn=as_pod_user,
                capture_output=True,
                timeout=10,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return python
    return None


@pytest.fixture
def pod_run():
    """Runs as the pod's uid (a non-root uid in any case), in a directory that uid can read."""
    python = pod_python()
    if python is None:
        pytest.skip("no interpreter the pod's uid (65534) can run")
    top = Path(tempfile.mkdtemp(prefix="integr8s-wrapper-"))
    top.chmod(0o755)
    code_dir = top / "integr8s"
    code_dir.mkdir()
    code_dir.chmod(0o755)
    yield functools.partial(run_wrapper, code_dir, pod_user=True, python=python)
    shutil.rmtree(top)


def forged_result(nonce: str, **fields) -> str:
    """A result line claiming a clean run."""
    claim = {"exit_code": 0, "signal": None, "reason": None, "output_truncated": False}
    payload = base64.b64encode(json.dumps(claim | fields).encode()).decode()
    return f"{nonce}:R:{payload}"


def dead(pid: int, within: float = 2.0) -> bool:
    """The process is gone (or a zombie waiting for whoever adopted it)."""
    until = time.monotonic() + within
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > until:
            return False
        time.sleep(0.02)


# --- a run and what it reports ----------------------------------------------------------------


def test_hello_world(run):
    r = run("print('hello, world')\n")
    assert r.returncode == 0 and r.stderr == b""
    assert r.result.status == COMPLETED and r.result.error_type is None
    assert r.result.exit_code == 0 and r.result.reason == ""
    assert r.result.output == "hello, world\n" and r.result.errors == ""
    assert not r.result.output_truncated and not r.result.errors_truncated
    assert 0 <= r.result.wall_time_ms <= r.elapsed * 1000
    assert r.envelope["signal"] is None and r.envelope["reason"] is None
    # every line of the log is an envelope line of this run, and the result is the last
    lines = r.log.rstrip(b"\n").split(b"\n")
    assert all(line.startswith(NONCE.encode() + b":") for line in lines)
    assert lines[-1].startswith(NONCE.encode() + b":R:")
    assert sum(line.startswith(NONCE.encode() + b":R:") for line in lines) == 1


def test_the_pods_exact_command(tmp_path):
    """python3 -u -S /integr8s/wrapper.py, on the ConfigMap's copy: the same, unmeasured."""
    r = run_wrapper(
        tmp_path / "integr8s", "import sys\nprint(sys.stdin.read()[::-1])\n", "olleh", exact=True
    )
    assert r.result.status == COMPLETED and r.result.output == "hello\n"


def test_stdin_is_the_script_stdin(run):
    script = "import sys\nfor line in sys.stdin:\n    print(line.strip().upper())\n"
    r = run(script, "first line\nsecond line\n")
    assert r.result.status == COMPLETED
    assert r.result.output == "FIRST LINE\nSECOND LINE\n"


def test_without_a_stdin_file_the_script_reads_nothing(run):
    r = run("import sys\nprint(repr(sys.stdin.read()))\n", "x", prepare=unlink_stdin)
    assert r.result.status == COMPLETED and r.result.output == "''\n"


def unlink_stdin(code_dir):
    (code_dir / "stdin").unlink()


def test_the_script_runs_in_a_clean_environment(run):
    script = (
        "import os, sys\n"
        "print(sorted(os.environ))\n"
        "print(os.getcwd(), sys.flags.dont_write_bytecode, sys.stdout.encoding)\n"
    )
    r = run(script)
    names, rest = r.result.output.splitlines()
    assert "INTEGR8S_NONCE" not in names and "INTEGR8S_LIMITS" not in names
    assert "INTEGR8S_CODE_DIR" not in names and NONCE not in r.result.output
    assert "'PYTHONUNBUFFERED'" in names and "'HOME'" in names
    assert rest == "/tmp 1 utf-8"


@pytest.mark.parametrize(
    "script, code",
    [
        ("import sys\nsys.exit(3)\n", 3),
        ("raise ValueError('boom')\n", 1),
        ("import sys\nsys.exit('fatal: no config')\n", 1),
    ],
)
def test_a_failing_script_is_a_script_error(run, script, code):
    r = run(script)
    assert r.returncode == 0  # the wrapper itself did fine: its report counts
    assert r.result.status == COMPLETED and r.result.error_type == SCRIPT_ERROR
    assert r.result.exit_code == code
    assert r.result.reason == f"The script ended with an error (exit code {code})."
    assert r.envelope["signal"] is None and r.envelope["reason"] is None
    if "boom" in script:
        assert r.result.errors.startswith("Traceback (most recent call last):")
        assert r.result.errors.endswith("ValueError: boom\n")
    if "fatal" in script:
        assert r.result.errors == "fatal: no config\n"


def test_a_script_killed_by_a_signal(run):
    r = run("import os, signal\nprint('bye', flush=True)\nos.kill(os.getpid(), signal.SIGTERM)\n")
    assert r.result.status == COMPLETED and r.result.error_type == SCRIPT_ERROR
    assert r.result.exit_code == 128 + signal.SIGTERM and r.envelope["signal"] == signal.SIGTERM
    assert r.envelope["reason"] is None and r.result.output == "bye\n"


def test_a_script_that_cannot_be_started_is_reported(run, monkeypatch):
    """A stdin that is there but cannot be opened (a socket): the child says so, exits 127."""

    def socket_as_stdin(code_dir):
        unlink_stdin(code_dir)
        monkeypatch.chdir(code_dir)  # a relative path: AF_UNIX paths are short
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind("stdin")

    r = run("print('never')\n", prepare=socket_as_stdin)
    assert r.returncode == 0 and r.result.error_type == SCRIPT_ERROR and r.result.exit_code == 127
    assert r.result.output == "" and r.stderr == b""
    assert r.result.errors.startswith("integr8s: could not start the script: ")
    assert "No such device or address" in r.result.errors


# --- output: streamed, capped -----------------------------------------------------------------


def test_unicode_and_invalid_utf8(run):
    script = (
        "import sys\n"
        "print('héllo wörld ✓ 🐍 ' + 'é' * 5000)\n"  # multi-byte characters across chunks
        "sys.stdout.flush()\n"
        "sys.stdout.buffer.write(b'raw \\xff\\xfe bytes\\n')\n"
        "sys.stderr.buffer.write(b'\\xc3(\\n')\n"
        "print('ünïcode on stderr', file=sys.stderr)\n"
    )
    r = run(script)
    assert r.result.status == COMPLETED
    assert r.result.output == "héllo wörld ✓ 🐍 " + "é" * 5000 + "\nraw \ufffd\ufffd bytes\n"
    assert r.result.errors == "\ufffd(\nünïcode on stderr\n"


def test_output_is_streamed_in_chunks_while_the_script_runs(run):
    """Several O lines, each written while the script still ran (a later kill keeps them)."""
    script = (
        "import sys, time\n"
        "for i in range(5):\n"
        "    print('tick', i)\n"
        "    print('tock', i, file=sys.stderr)\n"
        "    time.sleep(0.06)\n"
        "sys.stdout.write('x' * 20000)\n"
    )
    r = run(script)
    kinds = [line.split(b":")[1] for line in r.log.splitlines()]
    assert kinds.count(b"O") >= 5 and kinds.count(b"E") >= 5 and kinds[-1] == b"R"
    assert r.result.output == "".join(f"tick {i}\n" for i in range(5)) + "x" * 20000
    assert r.result.errors == "".join(f"tock {i}\n" for i in range(5))


SPEW = (
    "import sys, time\n"
    "stream = getattr(sys, {stream!r})\n"
    "for _ in range(100):\n"
    "    stream.write({char!r} * 1000)\n"
    "time.sleep(30)\n"
)


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_limit_on_one_stream(run, stream):
    r = run(SPEW.format(stream=stream, char="a"), output_bytes=10_000)
    assert r.elapsed < 10  # stopped, not left to sleep
    assert r.result.status == FAILED and r.result.error_type == OUTPUT_LIMIT
    assert r.result.reason.startswith("Stopped: printed more than 10000 bytes of output")
    assert r.envelope["reason"] == "output_limit" and r.envelope["signal"] == signal.SIGKILL
    printed, other = (r.result.output, r.result.errors)[:: 1 if stream == "stdout" else -1]
    truncated = (r.result.output_truncated, r.result.errors_truncated)
    assert printed == "a" * 10_000 and other == ""
    assert truncated == ((True, False) if stream == "stdout" else (False, True))


def test_output_limit_counts_both_streams_together(run):
    script = (
        "import sys, time\n"
        "sys.stdout.write('o' * 6000)\n"
        "sys.stdout.flush()\n"
        "time.sleep(0.1)\n"  # stdout is read first
        "sys.stderr.write('e' * 6000)\n"
        "time.sleep(30)\n"
    )
    r = run(script, output_bytes=10_000)
    assert r.result.error_type == OUTPUT_LIMIT and r.elapsed < 10
    assert r.result.output == "o" * 6000 and r.result.errors == "e" * 4000
    assert not r.result.output_truncated and r.result.errors_truncated


def test_output_exactly_at_the_limit_is_not_cut(run):
    r = run(
        "import sys\nsys.stdout.write('a' * 6000)\nsys.stderr.write('b' * 4000)\n",
        output_bytes=10_000,
    )
    assert r.result.status == COMPLETED and r.result.error_type is None
    assert len(r.result.output) + len(r.result.errors) == 10_000
    assert not r.result.output_truncated and not r.result.errors_truncated


# The wrapper is slow to look: it sees no output until the script has exited (a busy node).
LATE_READER = """\
import os, select, time
real_select = select.select
seen_exit = []

def late_select(r, w, x, timeout=None):
    if not seen_exit:
        try:
            exited = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # already reaped
            exited = True
        if exited is None:
            time.sleep(timeout or 0)
        else:
            seen_exit.append(True)
        return [], [], []
    return real_select(r, w, x, timeout)

select.select = late_select
"""


def test_output_over_the_limit_read_after_the_script_exited_is_still_the_limit(run):
    """Regression: output that crossed the cap but was read only after the script had exited
    was cut without saying so (completed, no error), depending on timing."""
    script = "import os\nos.write(1, b'a' * 3000)\nos.write(2, b'b' * 3000)\nos._exit(0)\n"
    r = run(script, output_bytes=4000, setup=LATE_READER)
    assert r.envelope["exit_code"] == 0 and r.envelope["signal"] is None  # it was not killed
    assert r.envelope["reason"] == "output_limit"
    assert r.result.status == FAILED and r.result.error_type == OUTPUT_LIMIT
    assert r.result.output == "a" * 3000 and r.result.errors == "b" * 1000


# --- time, processes, memory ------------------------------------------------------------------


def test_cpu_time_limit(run):
    """The wrapper stops the script once it has used its CPU time (before the per-process
    rlimit, a backstop a second above, would)."""
    r = run("print('spinning', flush=True)\nwhile True:\n    pass\n", cpu_time_s=1, wall_time_s=20)
    assert r.result.status == TIMEOUT and r.result.error_type == TIMEOUT
    assert r.result.reason == "Stopped: used more than 1 s of CPU time."
    assert r.envelope["reason"] == "cpu_time" and r.envelope["signal"] == signal.SIGKILL
    assert r.result.output == "spinning\n"
    assert 1000 <= r.result.cpu_time_ms <= 1600 and r.elapsed < 10


def test_the_cpu_limit_is_the_runs_not_each_processes(run):
    """Three children each well under the limit, together over it: stopped at the limit."""
    script = (
        "import os, time\n"
        "print('forking', flush=True)\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        while time.process_time() < 0.6:\n"
        "            pass\n"
        "        os._exit(0)\n"
        "for _ in range(3):\n"
        "    os.wait()\n"
        "print('all three finished')\n"
    )
    r = run(script, cpu_time_s=1, wall_time_s=20)
    assert r.result.status == TIMEOUT and r.envelope["reason"] == "cpu_time"
    assert r.result.reason == "Stopped: used more than 1 s of CPU time."
    assert r.result.output == "forking\n"
    assert 1000 <= r.result.cpu_time_ms <= 1600


def test_a_child_still_running_counts_towards_the_limit(run):
    """The script waits while its child spins: the child's CPU time is the run's."""
    script = "import os, time\nif os.fork() == 0:\n    while True:\n        pass\ntime.sleep(30)\n"
    r = run(script, cpu_time_s=1, wall_time_s=10)
    assert r.result.error_type == TIMEOUT and r.envelope["reason"] == "cpu_time"
    assert r.elapsed < 5 and 1000 <= r.result.cpu_time_ms <= 1600


@pytest.mark.parametrize("signum", [signal.SIGXCPU, signal.SIGKILL])
def test_a_script_that_kills_itself_is_not_a_limit(run, signum):
    """SIGXCPU or SIGKILL of the script's own doing, after some CPU: its error, not a limit."""
    script = (
        "import os, time\n"
        "while time.process_time() < 0.3:\n"
        "    pass\n"
        f"os.kill(os.getpid(), {int(signum)})\n"
    )
    r = run(script, cpu_time_s=0.5)
    assert r.envelope["reason"] is None and r.envelope["signal"] == signum
    assert r.result.status == COMPLETED and r.result.error_type == SCRIPT_ERROR
    assert r.result.reason == f"The script was killed by signal {signal.Signals(signum).name}."


def test_wall_time_limit(run):
    script = "import time\nprint('waiting', flush=True)\ntime.sleep(30)\n"
    r = run(script, wall_time_s=0.5)
    assert r.result.status == TIMEOUT and r.result.error_type == TIMEOUT
    assert r.result.reason == "Stopped: ran longer than 0.5 s."
    assert r.envelope["reason"] == "wall_time" and r.envelope["signal"] == signal.SIGKILL
    assert r.result.output == "waiting\n"
    assert 500 <= r.result.wall_time_ms < 3000 and r.elapsed < 5
    assert r.result.cpu_time_ms < 500


# CPU time is reported from tick-sampled utime and stime, which can read low on a busy machine:
# the bounds below are loose.
MEMORY_AND_CPU = """\
import time
block = b"x" * (64 * 1024 * 1024)  # written, so resident
start = time.process_time()
while time.process_time() - start < 0.3:
    pass
time.sleep(0.1)  # long enough to be sampled where usage is sampled
print(len(block))
"""


@pytest.mark.parametrize("hide", [(), TRIMMED], ids=["resource", "trimmed"])
def test_peak_memory_and_cpu_time_are_measured(run, hide):
    r = run(MEMORY_AND_CPU, hide=hide)
    assert r.result.status == COMPLETED and r.result.output == f"{64 * MIB}\n"
    assert 64 * 1024 <= r.result.peak_memory_kb < 512 * 1024
    assert 200 <= r.result.cpu_time_ms <= r.result.wall_time_ms + 100
    assert r.result.wall_time_ms >= 400


# /tmp (in a pod, an emptyDir of sizeLimit) has no room left when the run ends.
TMP_FULL = """\
import os
real_statvfs = os.statvfs

class Full:
    f_bavail = 0

os.statvfs = lambda path: Full() if path == "/tmp" else real_statvfs(path)
"""


def test_a_full_tmp_is_reported(run):
    script = "raise OSError(28, 'No space left on device')\n"
    r = run(script, setup=TMP_FULL, tmp_bytes=4 * MIB)
    assert r.envelope["tmp_full"] is True
    assert "/tmp" in r.result.reason and "4 MiB" in r.result.reason  # classify()'s words
    assert run("print('fine')\n", setup=TMP_FULL).result.error_type is None  # not a failure
    plain = run(script, tmp_bytes=4 * MIB)  # a script's own ENOSPC, /tmp not full
    assert plain.envelope["tmp_full"] is False and "/tmp" not in plain.result.reason


def test_a_left_over_child_is_killed_when_the_script_ends(run):
    script = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c',"
        " 'import time\\nwhile True:\\n    print(\"late\", flush=True)\\n    time.sleep(0.01)'])\n"
        "print('child', child.pid, flush=True)\n"
    )
    r = run(script)
    assert r.result.status == COMPLETED and r.result.exit_code == 0
    pid = int(r.result.output.splitlines()[0].split()[1])
    assert dead(pid)
    assert r.log.rstrip(b"\n").split(b"\n")[-1].startswith(NONCE.encode() + b":R:")


@pytest.mark.skipif(not can_unshare(), reason="needs root and unshare for a PID namespace")
def test_as_pid_1_a_plain_run(run):
    """Nothing else to kill: kill(-1) finds no process, and that is fine."""
    r = run("import os, sys\nprint(os.getppid(), sys.stdin.read())\n", "in", pid1=True)
    assert r.returncode == 0 and r.stderr == b""
    assert r.result.status == COMPLETED and r.result.output == "1 in\n"


@pytest.mark.skipif(not can_unshare(), reason="needs root and unshare for a PID namespace")
def test_as_pid_1_even_a_process_that_left_the_session_is_killed(run):
    """As PID 1 (as in a pod) the wrapper kills every process, and adopts and reaps orphans."""
    script = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"  # out of the script's session: only kill(-1) reaches it
        "    if os.fork() == 0:\n"
        "        time.sleep(0.3)\n"
        "        print('late', flush=True)\n"
        "        time.sleep(30)\n"
        "    os._exit(0)\n"
        "time.sleep(0.1)\n"
        "print('pid', os.getpid(), flush=True)\n"
    )
    r = run(script, pid1=True)
    assert r.result.status == COMPLETED and r.result.exit_code == 0
    assert r.result.output == "pid 2\n"  # the wrapper is 1
    assert "late" not in r.result.output
    assert r.elapsed < 0.3 + 2


@pytest.mark.skipif(not can_unshare(), reason="needs root and unshare for a PID namespace")
@pytest.mark.parametrize("hide", [(), TRIMMED], ids=["resource", "trimmed"])
def test_as_pid_1_a_run_over_time_is_stopped_with_its_children(run, hide):
    script = (
        "import subprocess, time\n"
        "subprocess.Popen(['sleep', '30'])\n"
        "print('started', flush=True)\n"
        "time.sleep(30)\n"
    )
    r = run(script, pid1=True, hide=hide, wall_time_s=0.5)
    assert r.result.error_type == TIMEOUT and r.envelope["reason"] == "wall_time"
    assert r.result.output == "started\n" and r.elapsed < 5


def test_outside_a_pid_namespace_a_process_that_left_the_session_outlives_the_wrapper(run):
    """The limit of a wrapper that is not PID 1 (never the case in a pod): a daemon out of the
    script's session survives; the wrapper reads its output for half a second, then reports."""
    script = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    print('daemon', os.getpid(), flush=True)\n"
        "    while True:\n"
        "        try:\n"  # once the wrapper stops reading, writes fail: keep going regardless
        "            os.write(1, b'late\\n')\n"
        "        except OSError:\n"
        "            pass\n"
        "        time.sleep(0.05)\n"
        "time.sleep(0.2)\n"
    )
    r = run(script)
    pid = int(r.result.output.split()[1])
    try:
        assert not dead(pid, within=0)
    finally:
        os.kill(pid, signal.SIGKILL)
    assert r.result.status == COMPLETED and r.result.exit_code == 0
    assert r.result.wall_time_ms + 450 <= r.elapsed * 1000 < 5000  # 0.5 s more, no longer
    assert r.result.output.count("late") > 5
    assert dead(pid)


@pytest.mark.parametrize("hide", [(), TRIMMED], ids=["resource", "prlimit"])
def test_a_fork_bomb_is_bounded_by_the_process_limit(pod_run, hide):
    if not k8s_wrapper.resource and not hide:  # pragma: no cover
        pytest.skip("no resource module")
    script = (
        "import os, time\n"
        "pids = []\n"
        "try:\n"
        "    for _ in range(500):\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(30)\n"
        "            os._exit(0)\n"
        "        pids.append(pid)\n"
        "except OSError as exc:\n"
        "    print('refused', exc.errno)\n"
        "print(*pids)\n"
    )
    r = pod_run(script, hide=hide, processes=8)
    assert r.result.status == COMPLETED and r.result.exit_code == 0, r.result
    refused, pids = r.result.output.splitlines()
    assert refused == f"refused {errno.EAGAIN}"
    pids = [int(p) for p in pids.split()]
    assert len(pids) < 8
    assert all(dead(pid) for pid in pids)


# --- the result cannot be forged --------------------------------------------------------------


def test_lines_that_look_like_envelopes_are_just_output(run):
    """Printed envelope lines, with a wrong nonce or this run's nonce (guessed), are data."""
    lines = [
        forged_result("ffffffffffffffffffffffffffffffff"),
        forged_result(""),
        forged_result(NONCE),
        f"{NONCE}:O:{base64.b64encode(b'injected').decode()}",
    ]
    script = (
        "import sys\n"
        f"lines = {lines!r}\n"
        "for line in lines:\n"
        "    print(line)\n"
        "    print(line, file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    r = run(script)
    assert r.result.error_type == SCRIPT_ERROR and r.result.exit_code == 3
    assert r.result.output == r.result.errors == "".join(line + "\n" for line in lines)
    assert r.envelope["exit_code"] == 3


# The script a wrapper without ctypes let through: it read the nonce from the wrapper's
# environ and wrote a result into the log through the wrapper's stdout.
FORGER = (
    "import os, sys\n"
    "ppid = os.getppid()\n"
    "with open(f'/proc/{ppid}/environ', 'rb') as f:\n"
    "    env = dict(v.split(b'=', 1) for v in f.read().split(b'\\0') if b'=' in v)\n"
    "nonce = env[b'INTEGR8S_NONCE'].decode()\n"
    "with open(f'/proc/{ppid}/fd/1', 'w') as log:\n"
    "    log.write(LINE.replace('NONCE', nonce) + '\\n')\n"
    "print('wrote it')\n"
    "sys.exit(3)\n"
).replace("LINE", repr(forged_result("NONCE", peak_memory_kb=1)))


def test_without_ctypes_the_script_is_not_run(pod_run):
    """No ctypes, so no PR_SET_DUMPABLE: the script could forge the log. It never runs; the
    result says why, in words an operator can act on."""
    r = pod_run(FORGER, hide=("ctypes",))
    assert r.returncode == 0 and r.stderr == b""
    assert r.log.count(b"\n") == 1 and r.log.startswith(NONCE.encode() + b":R:")  # R alone
    assert r.envelope == {
        "exit_code": None,
        "signal": None,
        "reason": "unsafe_image",
        "unsafe": "no_ctypes",
    }
    assert r.result.status == FAILED and r.result.error_type == SYSTEM_ERROR
    assert r.result.exit_code is None and r.result.output == r.result.errors == ""
    assert r.result.reason == (
        "The sandbox image python:3.13-slim cannot keep the script away from the platform's"
        " wrapper (its Python has no ctypes), so the script was not run; use an image with the"
        " full standard library, such as python:3.13-slim."
    )


# ctypes is there, but the kernel does not make the wrapper non-dumpable.
PRCTL_IGNORED = """\
import ctypes

class Libc:
    def prctl(self, *args):
        return 1 if args[0] == 3 else 0  # PR_GET_DUMPABLE: still dumpable

ctypes.CDLL = lambda *args, **kwargs: Libc()
"""


def test_a_wrapper_still_dumpable_after_prctl_does_not_run_the_script(run):
    r = run("print('ran')\n", setup=PRCTL_IGNORED)
    assert r.envelope["reason"] == "unsafe_image" and r.envelope["unsafe"] == "prctl_failed"
    assert r.result.error_type == SYSTEM_ERROR and r.result.output == ""
    assert r.result.reason == (
        "The sandbox image python:3.13-slim cannot keep the script away from the platform's"
        " wrapper (the kernel left the wrapper dumpable after prctl(PR_SET_DUMPABLE)), so the"
        " script was not run; check that the pod's seccomp profile and runtime allow that prctl."
    )


def test_the_wrapper_is_closed_to_the_script(pod_run):
    """With ctypes the wrapper is not dumpable: its environ and fds are closed to the script."""
    script = (
        "import os\n"
        "ppid = os.getppid()\n"
        "for what, mode in (('environ', 'rb'), ('fd/1', 'wb'), ('mem', 'rb')):\n"
        "    try:\n"
        "        open(f'/proc/{ppid}/{what}', mode).close()\n"
        "        print(what, 'open')\n"
        "    except PermissionError:\n"
        "        print(what, 'closed')\n"
        "print(os.getuid())\n"
    )
    r = pod_run(script)
    assert r.result.status == COMPLETED
    assert r.result.output.splitlines()[:3] == ["environ closed", "fd/1 closed", "mem closed"]
    assert int(r.result.output.splitlines()[3]) != 0


# --- stopping and the node's verdicts ---------------------------------------------------------


def test_sigterm_stops_the_script_and_still_reports(run):
    """The kubelet's SIGTERM (pod deleted): the script is killed, the result says so."""
    script = "import time\nprint('ready', flush=True)\ntime.sleep(30)\n"
    r = run(script, signal_after=(b"ready", signal.SIGTERM))
    assert r.returncode == 0 and r.elapsed < 10
    assert r.envelope["reason"] == "terminated" and r.envelope["signal"] == signal.SIGKILL
    assert r.result.status == FAILED and r.result.error_type == SYSTEM_ERROR
    assert r.result.reason == "The sandbox was stopped before the script finished."
    assert r.result.output == "ready\n"


# The kernel's OOM counter for the container, as cgroup v1 shows it (memory.oom_control): one
# more kill after the script starts.
FAKE_CGROUP_V1 = """\
import builtins, io
real_open = builtins.open
reads = []

def cgroup_open(path, *args, **kwargs):
    if path == "/sys/fs/cgroup/memory.events":
        raise FileNotFoundError(path)
    if path == "/sys/fs/cgroup/memory/memory.oom_control":
        reads.append(path)
        return io.StringIO(f"oom_kill_disable 0\\nunder_oom 0\\noom_kill {len(reads) - 1}\\n")
    return real_open(path, *args, **kwargs)

builtins.open = cgroup_open
"""


def test_a_script_killed_by_the_oom_killer_is_a_memory_error(run):
    r = run("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", setup=FAKE_CGROUP_V1)
    assert r.envelope["oom_killed"] is True and r.envelope["reason"] == "memory_limit"
    assert r.result.status == FAILED and r.result.error_type == MEMORY_LIMIT
    assert r.result.exit_code == 137


def test_an_oom_kill_the_script_survived_is_still_reported(run):
    """A child killed at the memory limit, the script exiting on its own: the kill is a fact
    the result keeps (classify() words it), though the script did not die of it."""
    r = run("import sys\nsys.exit(1)\n", setup=FAKE_CGROUP_V1)
    assert r.envelope["oom_killed"] is True and r.envelope["reason"] is None
    assert r.result.exit_code == 1 and "128 MiB" in r.result.reason


def test_a_sigkill_without_oom_is_the_scripts_own_doing(run):
    r = run("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert r.envelope["reason"] is None and r.envelope["signal"] == signal.SIGKILL
    assert r.result.error_type == SCRIPT_ERROR and r.result.exit_code == 137


# --- trimmed and old interpreters -------------------------------------------------------------


def test_a_trimmed_python_runs_the_script(run):
    """No json or resource: rlimits come from prlimit, usage from /proc."""
    if not os.path.exists("/usr/bin/prlimit") and not os.path.exists("/bin/prlimit"):
        pytest.skip("util-linux's prlimit is not installed")
    script = "import sys\nprint(sys.stdin.read())\nsys.exit(4)\n"
    r = run(script, "via prlimit", hide=TRIMMED)
    assert r.result.error_type == SCRIPT_ERROR and r.result.exit_code == 4
    assert r.result.output == "via prlimit\n"


def test_a_trimmed_python_cpu_time_limit(run):
    if not os.path.exists("/usr/bin/prlimit") and not os.path.exists("/bin/prlimit"):
        pytest.skip("util-linux's prlimit is not installed")
    r = run("while True:\n    pass\n", hide=TRIMMED, cpu_time_s=1, wall_time_s=20)
    assert r.result.error_type == TIMEOUT and r.envelope["reason"] == "cpu_time"
    assert r.envelope["signal"] == signal.SIGKILL  # the wrapper's, before prlimit's backstop
    assert 900 <= r.result.cpu_time_ms <= 1600


OLD = [pytest.param(path, id=version) for version, path in OLD_PYTHONS.items()]


def old_python(path):
    if not os.path.exists(path):
        pytest.skip(f"{path} is not installed")
    return path


@pytest.mark.parametrize("path", OLD)
def test_old_interpreters_run_the_pods_command(run, path):
    script = (
        "import sys\n"
        "print(sys.version_info[:2], sys.stdin.read())\n"
        "print('to stderr', file=sys.stderr)\n"
        "sys.exit(2)\n"
    )
    r = run(script, "in", python=old_python(path), exact=True)
    version = tuple(int(p) for p in path.rsplit("python", 1)[1].split("."))
    assert r.returncode == 0 and r.stderr == b""
    assert r.result.output == f"{version} in\n" and r.result.errors == "to stderr\n"
    assert r.result.error_type == SCRIPT_ERROR and r.result.exit_code == 2


@pytest.mark.parametrize("path", OLD)
def test_old_interpreters_enforce_limits(run, path):
    r = run(
        SPEW.format(stream="stdout", char="z"),
        python=old_python(path),
        exact=True,
        output_bytes=5000,
    )
    assert r.result.error_type == OUTPUT_LIMIT and r.result.output == "z" * 5000
    r = run("import time\ntime.sleep(30)\n", python=old_python(path), exact=True, wall_time_s=0.3)
    assert r.result.error_type == TIMEOUT and r.envelope["reason"] == "wall_time"


@pytest.mark.parametrize("path", OLD)
def test_old_trimmed_interpreters(run, path):
    r = run(MEMORY_AND_CPU, python=old_python(path), hide=TRIMMED)
    assert r.result.status == COMPLETED and r.result.output == f"{64 * MIB}\n"
    assert r.result.peak_memory_kb >= 64 * 1024 and r.result.cpu_time_ms >= 200


# --- the helpers, in this process -------------------------------------------------------------


def test_parse_limits():
    assert k8s_wrapper.parse_limits("wall_time_s=5.0, cpu_time_s=2,processes=64,") == {
        "wall_time_s": 5.0,
        "cpu_time_s": 2.0,
        "processes": 64.0,
    }
    assert k8s_wrapper.parse_limits("") == k8s_wrapper.parse_limits(None) == {}


def test_to_json_is_json_without_the_json_module():
    flat = {
        "b": True,
        "a": None,
        "n": -12,
        "f": False,
        "word": "wall_time",
        "evil": 'x", "exit_code": 0, "\\\n}',
        "float": 1.5,
    }
    text = k8s_wrapper.to_json(flat)
    assert json.loads(text) == {
        "a": None,
        "b": True,
        "evil": "x exit_code 0 ",
        "f": False,
        "float": "1.5",
        "n": -12,
        "word": "wall_time",
    }
    assert list(json.loads(text)) == sorted(flat)


def test_the_emitter_caps_and_coalesces(capfd):
    emitter = k8s_wrapper.Emitter(NONCE, 10)
    assert emitter.add("O", b"123456")
    assert not emitter.add("E", b"abcdef")  # 4 of 6 bytes fit
    assert not emitter.add("O", b"7")
    emitter.flush(idle=True)  # too soon after the last flush
    assert capfd.readouterr().out == ""
    emitter.flush()
    emitter.write_line("R", k8s_wrapper.to_json({"exit_code": 0}).encode())
    out, err, result = parse_envelope(capfd.readouterr().out.encode(), NONCE)
    assert (out, err, result) == (b"123456", b"abcd", {"exit_code": 0})
    assert emitter.truncated == {"O": True, "E": True} and emitter.used == 10


def test_the_emitter_flushes_big_output_at_once(capfd):
    emitter = k8s_wrapper.Emitter(NONCE, 1 << 20)
    emitter.add("O", b"x" * k8s_wrapper.FLUSH_BYTES)
    assert parse_envelope(capfd.readouterr().out.encode(), NONCE)[0] == b"x" * 4096
    assert emitter.pending["O"] == b""


def test_write_line_survives_short_writes_and_eintr(capfd, monkeypatch):
    real_write = os.write
    calls = []

    def flaky_write(fd, data):
        if fd != 1:
            return real_write(fd, data)
        calls.append(len(data))
        if len(calls) == 1:
            raise InterruptedError(errno.EINTR, "interrupted")
        if len(calls) == 2:
            raise OSError(errno.EINTR, "interrupted")
        return real_write(fd, bytes(data[:7]))  # a pipe taking a few bytes at a time

    monkeypatch.setattr(os, "write", flaky_write)
    k8s_wrapper.Emitter(NONCE, 100).write_line("O", b"hello there")
    monkeypatch.undo()
    assert parse_envelope(capfd.readouterr().out.encode(), NONCE)[0] == b"hello there"
    assert len(calls) > 3


def test_write_line_raises_other_errors(monkeypatch):
    def broken(fd, data):
        raise BrokenPipeError(errno.EPIPE, "gone")

    monkeypatch.setattr(os, "write", broken)
    with pytest.raises(BrokenPipeError):
        k8s_wrapper.Emitter(NONCE, 100).write_line("O", b"x")


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"/sys/fs/cgroup/memory.events": "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n"}, 2),
        ({"/sys/fs/cgroup/memory/memory.oom_control": "under_oom 0\noom_kill 5\n"}, 5),
        ({"/sys/fs/cgroup/memory.events": "oom_kill many\n"}, None),
        ({"/sys/fs/cgroup/memory.events": "oom 1\n"}, None),
        ({}, None),
    ],
)
def test_oom_kills_reads_the_cgroup(monkeypatch, files, expected):
    def fake_open(path, *args, **kwargs):
        if path not in files:
            raise FileNotFoundError(path)
        return io.StringIO(files[path])

    monkeypatch.setattr(k8s_wrapper, "open", fake_open, raising=False)
    assert k8s_wrapper.oom_kills() == expected


def test_child_limits_with_resource():
    if k8s_wrapper.resource is None:  # pragma: no cover
        pytest.skip("no resource module")
    prefix, apply = k8s_wrapper.child_limits({"cpu_time_s": 1.5, "processes": 8})
    assert prefix == [] and callable(apply)


def test_a_crash_in_the_pod_starts_no_core_helper_on_the_node(monkeypatch):
    """RLIMIT_CORE of 1, not 0: a piped core_pattern runs its helper (as root, on the node)
    for a crash under a limit of 0, and skips it only for a limit of exactly 1."""
    if k8s_wrapper.resource is None:  # pragma: no cover
        pytest.skip("no resource module")
    applied = {}
    monkeypatch.setattr(
        k8s_wrapper.resource, "setrlimit", lambda which, value: applied.update({which: value})
    )
    _, apply = k8s_wrapper.child_limits({"cpu_time_s": 1.5, "processes": 8})
    apply()
    assert applied[k8s_wrapper.resource.RLIMIT_CORE] == (1, 1)


def test_child_limits_with_prlimit_only(monkeypatch):
    monkeypatch.setattr(k8s_wrapper, "resource", None)
    monkeypatch.setattr(os.path, "exists", lambda p: p == "/bin/prlimit")
    prefix, apply = k8s_wrapper.child_limits({"cpu_time_s": 1.5, "processes": 8})
    assert prefix == ["/bin/prlimit", "--cpu=3:4", "--nproc=8", "--core=1", "--"]  # a backstop
    assert apply() is None


def test_child_limits_with_neither(monkeypatch):
    monkeypatch.setattr(k8s_wrapper, "resource", None)
    monkeypatch.setattr(os.path, "exists", lambda p: False)
    prefix, apply = k8s_wrapper.child_limits({})
    assert prefix == [] and apply() is None


def test_memory_from_proc_without_resource(monkeypatch):
    monkeypatch.setattr(k8s_wrapper, "resource", None)
    memory = k8s_wrapper.Memory()
    memory.sample(2**22 + 12345)  # no such process: nothing learnt, nothing raised
    assert memory.peak_kb() == 0
    memory.sample(os.getpid())
    assert memory.peak_kb() > 1000


def test_memory_with_resource_takes_what_wait4_reports():
    if k8s_wrapper.resource is None:  # pragma: no cover
        pytest.skip("no resource module")
    memory = k8s_wrapper.Memory()
    memory.sample(os.getpid())  # sampling is for /proc only
    assert memory.peak_kb() == 0
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    while memory.reap()[0] != pid:
        time.sleep(0.01)
    assert memory.peak_kb() > 1000


def fake_cgroup(monkeypatch, files):
    """Files under /sys/fs/cgroup as the wrapper reads them; files' values may be callables."""

    def fake_open(path, *args, **kwargs):
        if path not in files:
            raise FileNotFoundError(path)
        value = files[path]
        return io.StringIO(value() if callable(value) else value)

    monkeypatch.setattr(k8s_wrapper, "open", fake_open, raising=False)


@pytest.mark.parametrize(
    "procs, counter, expected",
    [
        ("/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/cpu.stat", "v2"),
        ("/sys/fs/cgroup/cpuacct/cgroup.procs", "/sys/fs/cgroup/cpuacct/cpuacct.usage", "v1"),
    ],
)
def test_cpu_comes_from_the_containers_cgroup_when_it_is_the_wrappers_alone(
    monkeypatch, procs, counter, expected
):
    used = {"us": 5_000_000}  # 5 s used before the wrapper looked (by nothing of the script)

    def read():
        if expected == "v2":
            return f"usage_usec {used['us']}\nuser_usec 1\nsystem_usec 1\n"
        return f"{used['us'] * 1000}\n"

    fake_cgroup(monkeypatch, {procs: f"{os.getpid()}\n", counter: read})
    cpu = k8s_wrapper.Cpu()
    assert cpu.cgroup is not None and cpu.cgroup[0] == counter
    assert cpu.seconds() < 0.05
    used["us"] += 1_500_000  # the script's processes, wherever they went, used 1.5 s
    assert 1.4 < cpu.seconds() <= 1.5
    assert cpu.reached(1.4) and not cpu.reached(1.6)


def test_a_cgroup_shared_with_other_processes_is_not_used(monkeypatch):
    """A host's cgroup (a test, a wrapper run outside a container) counts others' CPU too."""
    fake_cgroup(
        monkeypatch,
        {
            "/sys/fs/cgroup/cpuacct/cgroup.procs": f"1\n{os.getpid()}\n",
            "/sys/fs/cgroup/cpuacct/cpuacct.usage": "999999999999\n",
            "/sys/fs/cgroup/memory/cgroup.procs": f"1\n{os.getpid()}\n",
            "/sys/fs/cgroup/memory/memory.max_usage_in_bytes": "999999999999\n",
        },
    )
    assert k8s_wrapper.Cpu().cgroup is None and k8s_wrapper.Memory().cgroup is None


def test_a_cgroup_counter_that_goes_away_falls_back_to_proc(monkeypatch):
    files = {"/sys/fs/cgroup/cgroup.procs": f"{os.getpid()}\n", "/sys/fs/cgroup/cpu.stat": ""}
    fake_cgroup(monkeypatch, files)
    assert k8s_wrapper.Cpu().cgroup is None  # no usage_usec: not a counter
    files["/sys/fs/cgroup/cpu.stat"] = "usage_usec 10\n"
    cpu = k8s_wrapper.Cpu()
    assert cpu.cgroup is not None
    del files["/sys/fs/cgroup/cpu.stat"]
    assert cpu.seconds() >= 0.0 and cpu.cgroup is None


def test_memory_peak_comes_from_the_containers_cgroup(monkeypatch):
    fake_cgroup(
        monkeypatch,
        {
            "/sys/fs/cgroup/memory/cgroup.procs": f"{os.getpid()}\n",
            "/sys/fs/cgroup/memory/memory.max_usage_in_bytes": str(200 * MIB),
        },
    )
    memory = k8s_wrapper.Memory()
    assert memory.peak_kb() == 200 * 1024  # pipes and sockets the script filled count here


def test_cpu_from_proc_counts_live_descendants():
    cpu = k8s_wrapper.Cpu()
    assert cpu.cgroup is None  # a test process on a host
    before = cpu.seconds()  # this process's children so far (earlier tests' too)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child spins until killed
        while True:
            pass
    try:
        deadline = time.monotonic() + 10
        while cpu.seconds() - before < 0.3:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert cpu.seconds() - before >= 0.3  # reaped: in this process's children's times now


def test_output_files_come_back_within_the_caps(run, tmp_path):
    outputs = tmp_path / "integr8s" / "outputs"
    script = (
        "import os\n"
        f"out = {str(outputs)!r}\n"
        "open(out + '/a.txt', 'w').write('alpha')\n"
        "open(out + '/empty', 'w').close()\n"
        "open(out + '/big.bin', 'wb').write(bytes(range(256)) * 100)\n"  # 25 600 bytes: chunks
        "os.symlink('/etc/passwd', out + '/link')\n"
        "os.mkfifo(out + '/fifo')\n"
        "open(out + '/with space', 'w').write('odd name')\n"
    )
    done = run(script)
    assert done.result.status == "completed", done.result
    assert done.result.files == [
        ("a.txt", b"alpha"),
        ("big.bin", bytes(range(256)) * 100),
        ("empty", b""),
    ]
    shutil.rmtree(outputs)
    capped = run(
        script.replace("os.symlink", "pass  # ").replace("os.mkfifo", "pass  # "), output_files=2
    )
    assert [name for name, _ in capped.result.files] == ["a.txt", "big.bin"]
    assert capped.result.error_type == "output_limit" and "2 files" in capped.result.reason
    shutil.rmtree(outputs)
    sparse = run(
        f"f = open({str(outputs)!r} + '/sparse', 'wb')\nf.truncate(64 << 20)\nf.close()\n"
        f"open({str(outputs)!r} + '/small', 'w').write('kept')\n"
    )
    assert sparse.result.files == [("small", b"kept")]  # judged by its size, never read
    assert sparse.result.error_type == "output_limit"


def test_plt_show_saves_each_figure_as_a_png_output(run):
    """matplotlib's backend in a pod is integr8s_plots.py, shipped beside the script: Agg, and
    plt.show() saves the open figures into the outputs, as in the local sandbox."""
    from executions import runtimes
    from executions.sandbox.local import command

    site = command.site_dir(runtimes.default_version("local"))
    if site is None or not (Path(site) / "matplotlib").is_dir():
        pytest.skip("the default version's package set is not built (make test builds it)")
    script = (
        f"import sys; sys.path.append({str(site)!r})\n"
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3]); plt.show()\n"
        "plt.figure(); plt.bar([1], [2]); plt.show()\n"
        "import matplotlib; print(matplotlib.get_backend())\n"
    )
    r = run(script, wall_time_s=30, cpu_time_s=30, memory_bytes=512 << 20)
    assert r.result.status == "completed", r.result
    assert r.result.output == "module://integr8s_plots\n"
    assert [name for name, _ in r.result.files] == ["figure-1.png", "figure-2.png"]
    assert all(body.startswith(b"\x89PNG\r\n\x1a\n") for _, body in r.result.files)

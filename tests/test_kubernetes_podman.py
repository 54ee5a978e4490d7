"""The generated Pod and ConfigMap run for real under podman (see tests/k8s/podman.py)."""

import pytest

from executions.limits import MIB, Limits
from executions.runtimes import Runtime
from executions.sandbox.contract import RunSpec
from executions.sandbox.kubernetes import KubernetesBackend
from tests.hostile.cases import CASES, HostContext, check_case
from tests.k8s.podman import IMAGE, play, unavailable

WHY = unavailable()
pytestmark = [
    pytest.mark.podman,
    pytest.mark.slow,
    pytest.mark.skipif(bool(WHY), reason=WHY or "podman is ready"),
]


@pytest.fixture
def run():
    backend = KubernetesBackend(api=object(), namespace="default", installation="i8s-podman")

    def run(script, stdin="", **limits):
        spec = RunSpec(
            script=script,
            runtime=Runtime("3.11", image=IMAGE),
            limits=Limits(**limits),
            stdin=stdin,
            run_id="podman-test",
        )
        return play(backend, spec)

    return run


def test_hello_world(run):
    result = run("print('hello', input())\n", stdin="world")
    assert (result.status, result.error_type, result.exit_code) == ("completed", None, 0)
    assert result.output == "hello world\n"
    assert result.cpu_time_ms is not None and result.peak_memory_kb > 1000


def test_a_script_error_keeps_stdout_and_stderr_apart(run):
    result = run("print('before')\nraise ValueError('boom')\n")
    assert (result.status, result.error_type, result.exit_code) == ("completed", "script_error", 1)
    assert result.output == "before\n"
    assert "ValueError: boom" in result.errors


def test_a_memory_bomb_is_memory_limit_and_keeps_earlier_output(run):
    script = (
        "print('allocating', flush=True)\n"
        "chunks = []\n"
        "while True:\n"
        "    chunks.append(b'x' * 10**7)\n"
    )
    result = run(script, memory_bytes=64 * MIB)
    assert (result.status, result.error_type) == ("failed", "memory_limit")
    assert result.exit_code == 137
    assert result.output == "allocating\n"


def test_the_network_is_unreachable(run):
    script = (
        "import socket\n"
        "try:\n"  # PostgreSQL on this machine: only local addresses are ever tried
        "    socket.create_connection(('127.0.0.1', 5432), timeout=2)\n"
        "    print('connected')\n"
        "except OSError as exc:\n"
        "    print('blocked', type(exc).__name__)\n"
        "print(sorted(n for _, n in socket.if_nameindex()))\n"
    )
    result = run(script)
    assert result.output.startswith("blocked"), result
    assert "['lo']" in result.output


def test_the_script_runs_as_a_non_root_user_on_a_read_only_root(run):
    script = (
        "import os\n"
        "print(os.getuid(), os.getgid())\n"
        "for path in ('/etc/x', '/usr/x', '/integr8s/x'):\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "        print('wrote', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', exc.errno)\n"
        "open('/tmp/ok', 'w').write('fine')\n"
        "print(open('/tmp/ok').read())\n"
    )
    result = run(script)
    lines = result.output.splitlines()
    assert lines[0] == "65534 65534"
    assert all(line.startswith("refused") for line in lines[1:4]), lines
    assert lines[4] == "fine"


@pytest.mark.xfail(
    reason="podman 4.3 kube play ignores emptyDir sizeLimit; Kubernetes sizes the memory-backed"
    " tmpfs to it (checked in test_kubernetes_pod.py)",
    strict=False,
)
def test_tmp_is_size_limited(run):
    script = (
        "try:\n"
        "    with open('/tmp/big', 'wb') as f:\n"
        "        for _ in range(64):\n"
        "            f.write(b'x' * 2**20)\n"
        "    print('wrote 64 MiB')\n"
        "except OSError as exc:\n"
        "    print('full', exc.errno)\n"
    )
    result = run(script, tmp_bytes=8 * MIB)
    assert result.status in ("completed", "failed")
    assert "wrote 64 MiB" not in result.output


def test_the_output_cap_stops_the_script(run):
    result = run("while True:\n    print('x' * 1000)\n", output_bytes=20_000)
    assert (result.status, result.error_type) == ("failed", "output_limit")
    assert result.output_truncated and len(result.output) <= 20_000


def test_the_cpu_limit_is_a_timeout(run):
    result = run("print('spin', flush=True)\nwhile True: pass\n", cpu_time_s=1)
    assert (result.status, result.error_type) == ("timeout", "timeout")
    assert result.output == "spin\n"


def test_the_wall_limit_is_a_timeout(run):
    result = run("import time\nprint('nap', flush=True)\ntime.sleep(60)\n", wall_time_s=1)
    assert (result.status, result.error_type) == ("timeout", "timeout")
    assert result.output == "nap\n"


def test_a_fork_bomb_is_held_by_the_process_limit(run):
    script = (
        "import os\n"
        "n = 0\n"
        "try:\n"
        "    for _ in range(200):\n"
        "        if os.fork() == 0:\n"
        "            import time; time.sleep(30); os._exit(0)\n"
        "        n += 1\n"
        "except OSError as exc:\n"
        "    print('stopped at', n)\n"
    )
    result = run(script, processes=16)
    assert result.output.startswith("stopped at"), result
    assert int(result.output.split()[-1]) < 16


def test_a_script_cannot_forge_the_result(run):
    script = (
        "import base64, os\n"
        "nonce = ''\n"
        "try:\n"
        "    env = open('/proc/1/environ', 'rb').read().split(b'\\0')\n"
        "    mine = [e for e in env if e.startswith(b'INTEGR8S_NONCE=')]\n"
        "    nonce = mine[0].split(b'=')[1].decode()\n"
        "except (OSError, IndexError):\n"
        "    pass\n"
        "forged = nonce + ':R:' + base64.b64encode(b'{\"exit_code\": 0}').decode() + '\\n'\n"
        "for target in ('/proc/1/fd/1', '/dev/stdout'):\n"
        "    try:\n"
        "        with open(target, 'w') as f:\n"
        "            f.write(forged)\n"
        "    except OSError:\n"
        "        pass\n"
        "raise SystemExit(5)\n"
    )
    result = run(script)
    assert (result.exit_code, result.error_type) == (5, "script_error")


# Cases judged from the host (processes left behind, a host process signalled) do not apply:
# the pod shares nothing with the host, and podman removes it after the run.
# Known differences between podman on this machine and a Kubernetes node, not sandbox holes.
PODMAN_GAPS = {
    "disk_fill_tmp": "podman 4.3 kube play ignores emptyDir sizeLimit (Kubernetes sizes the"
    " memory-backed /tmp to it)",
    "mount_and_namespaces": "the test image is python3-minimal, which has no ctypes",
    "read_etc_shadow": "/etc/passwd and /etc/hostname are the container image's own files",
    "writable_proc_files": "runc masks /proc/keys and /proc/timer_list with /dev/null (writes"
    " go nowhere); /proc/pressure is writable under runc's default profile",
}
PODMAN_CASES = [
    pytest.param(
        c,
        id=c.name,
        marks=[pytest.mark.xfail(reason=PODMAN_GAPS[c.name], strict=False)]
        if c.name in PODMAN_GAPS
        else [],
    )
    for c in CASES
    if not c.host_checks
]


@pytest.mark.parametrize("case", PODMAN_CASES)
def test_hostile(case):
    backend = KubernetesBackend(api=object(), namespace="default", installation="i8s-podman")

    def run_case(script, limits, stdin):
        spec = RunSpec(
            script=script,
            runtime=Runtime("3.11", image=IMAGE),
            limits=limits,
            stdin=stdin,
            run_id="podman-hostile",
        )
        return play(backend, spec)

    check_case(case, run_case, HostContext(victim_pid=0))

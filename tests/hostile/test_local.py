"""The hostile-script suite against the local backend (real bubblewrap, real cgroups)."""

import os
import shutil
import subprocess
import threading
import uuid

import pytest
from django.conf import settings

from executions import runtimes
from executions.sandbox.base import RunSpec
from executions.sandbox.local import LocalBackend
from tests.hostile.cases import (
    CASES,
    DAEMON_TOKEN,
    SECRET_ENV,
    SECRET_VALUE,
    HostContext,
    check_case,
)

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")

TEST_NAME = "integr8s-test"


@pytest.fixture(scope="module")
def backend():
    backend = LocalBackend(name=TEST_NAME)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def runtime():
    found = runtimes.available("local")
    if not found:
        pytest.skip("no local Python interpreter found")
    return found.get("3.12") or next(iter(found.values()))


@pytest.fixture
def host(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET_VALUE)
    victim = subprocess.Popen(["sleep", "120"])
    try:
        yield HostContext(victim_pid=victim.pid, project_dir=str(settings.BASE_DIR))
        assert victim.poll() is None, "a host process was killed from inside the sandbox"
    finally:
        victim.kill()
        victim.wait()


def host_processes_with(token: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if token.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def leftover_cgroups(backend) -> list[str]:
    if backend.hierarchy is None:
        return []
    return sorted(n for n in backend.hierarchy.leftovers() if not n.startswith("spare-"))


def make_run(backend, runtime):
    def run(script, limits, stdin):
        spec = RunSpec(script, runtime, limits, stdin=stdin, run_id=uuid.uuid4().hex)
        return backend.run(spec, threading.Event())

    return run


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.slow else []) for c in CASES],
)
def test_hostile_case(case, backend, runtime, host):
    check_case(case, make_run(backend, runtime), host)
    assert leftover_cgroups(backend) == []
    if case.host_checks:
        assert host_processes_with(DAEMON_TOKEN) == []


def test_hostile_cases_under_rlimits_only(runtime, host):
    """Without cgroups the rlimit fallback still holds memory, CPU and output."""
    backend = LocalBackend(cgroup_root=None, name=TEST_NAME)
    wanted = {"memory_bomb", "cpu_spin", "stdout_flood", "network_egress", "daemon_outlives_run"}
    for case in CASES:
        if case.name in wanted:
            check_case(case, make_run(backend, runtime), host)
    assert host_processes_with(DAEMON_TOKEN) == []

"""The local backend's error paths, on a real LocalBackend (bubblewrap, cgroups as found);
monkeypatching only forces the failure under test."""

import logging
import shutil
import threading
import time
import uuid
from dataclasses import replace

import pytest

import executions.sandbox.local as local
from executions.sandbox.contract import RunSpec
from executions.sandbox.local import LocalBackend
from tests.conftest import SANDBOX_TEST_NAME as TEST_NAME
from tests.test_sandbox_local import LIMITS, runtime_for

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


@pytest.fixture(scope="module")
def py312():
    return runtime_for("3.12")


@pytest.fixture
def backend():
    backend = LocalBackend(name=TEST_NAME, spares=0)
    yield backend
    backend.close()


def spec_for(runtime, script="print('ok')", run_id=None):
    return RunSpec(script, runtime, LIMITS, "", run_id=run_id or uuid.uuid4().hex)


def run_names(backend):
    backend.settle()  # run() tears its sandbox down in a thread
    return {n for n in backend.hierarchy.leftovers() if not n.startswith("spare-")}


def test_bad_host_uids_are_refused():
    if local.os.geteuid() != 0:
        pytest.skip("host uids are a root worker's")
    with pytest.raises(ValueError, match="^SANDBOX_HOST_UIDS: "):
        LocalBackend(name=TEST_NAME, host_uids="not-a-range", spares=0)


def test_without_cgroups_or_uids(py312):
    backend = LocalBackend(cgroup_root=None, name=TEST_NAME, spares=0)
    try:
        assert backend.mode == "rlimits" and backend.hierarchy is None
        assert backend.cleanup_stale({"x"}) == 0
        backend.uids = None  # as a non-root worker
        assert backend._root_of(py312.prefix) is None
        assert backend._current_stage() is None
    finally:
        backend.close()


def test_a_missing_interpreter_is_a_platform_failure(backend, py312):
    runtime = replace(py312, executable="/nonexistent/python3")
    result = backend.run(spec_for(runtime), threading.Event())
    assert (result.status, result.error_type) == ("failed", "system_error")
    assert result.reason == (
        f"Python {py312.version} is not installed on this server (/nonexistent/python3)."
    )


def test_a_launcher_that_cannot_start_frees_its_uid_and_cgroup(backend, py312, monkeypatch):
    leases = []
    if backend.uids is not None:
        real_lease = backend.uids.lease
        monkeypatch.setattr(
            backend.uids, "lease", lambda: leases.append(real_lease()) or leases[-1]
        )

    def broken_spawn(*args, **kwargs):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(local, "spawn", broken_spawn)
    run_id = uuid.uuid4().hex
    result = backend.run(spec_for(py312, run_id=run_id), threading.Event())
    assert (result.status, result.error_type) == ("failed", "system_error")
    assert result.reason == "The sandbox could not start: [Errno 24] Too many open files"
    assert all(lease._fd == -1 for lease in leases)  # released
    if backend.hierarchy is not None:
        assert run_id not in run_names(backend)


def test_a_leftover_cgroup_of_the_same_run_is_replaced(backend, py312):
    if backend.hierarchy is None:
        pytest.skip("no cgroups here")
    run_id = uuid.uuid4().hex
    backend.hierarchy.create(run_id)  # a crashed earlier attempt
    result = backend.run(spec_for(py312, run_id=run_id), threading.Event())
    assert (result.status, result.output) == ("completed", "ok\n")
    assert run_id not in run_names(backend)


def test_a_spare_that_cannot_start_leaves_no_cgroup(backend, py312, monkeypatch):
    if backend.hierarchy is None:
        pytest.skip("no cgroups here")
    monkeypatch.setattr(local, "spawn", lambda *a, **k: (_ for _ in ()).throw(OSError("no")))
    before = set(backend.hierarchy.leftovers())
    with pytest.raises(OSError, match="no"):
        backend._make_spare((py312, LIMITS))
    assert set(backend.hierarchy.leftovers()) == before


def test_cleanup_stale_reports_a_cgroup_it_cannot_remove(backend, monkeypatch, caplog):
    if backend.hierarchy is None:
        pytest.skip("no cgroups here")
    name = uuid.uuid4().hex
    group = backend.hierarchy.create(name)
    monkeypatch.setattr(type(group), "remove", lambda self: False)
    with caplog.at_level(logging.ERROR, logger="executions.sandbox.local"):
        assert backend.cleanup_stale() == 0
    assert f"could not remove leftover sandbox cgroup {name}" in caplog.text
    monkeypatch.undo()
    assert group.remove()


@pytest.fixture
def spare_backend(py312):
    backend = LocalBackend(name=TEST_NAME, spares=1)
    if backend.mode != "v1":
        backend.close()
        pytest.skip("spares are v1's")
    yield backend
    backend.close()


def wait_spare(backend, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = backend.spares.held()
        if held:
            return held[0]
        time.sleep(0.02)
    pytest.fail("no spare was made")


def test_a_spare_that_died_is_discarded_for_a_fresh_launcher(spare_backend, py312):
    first = spare_backend.run(spec_for(py312), threading.Event())
    assert first.status == "completed"
    spare = wait_spare(spare_backend)
    spare_dir = next(iter(spare.group.dirs.values()))
    spare.proc.kill()
    spare.proc.wait()
    run_id = uuid.uuid4().hex
    result = spare_backend.run(spec_for(py312, run_id=run_id), threading.Event())
    assert (result.status, result.output) == ("completed", "ok\n")
    assert spare.script_w == -1 and spare.start_r == -1  # discarded
    assert not local.os.path.exists(spare_dir)


def test_a_spare_renamed_over_a_leftover_of_the_same_run(spare_backend, py312):
    spare_backend.run(spec_for(py312), threading.Event())
    wait_spare(spare_backend)
    run_id = uuid.uuid4().hex
    spare_backend.hierarchy.create(run_id)  # a crashed earlier attempt
    result = spare_backend.run(spec_for(py312, run_id=run_id), threading.Event())
    assert (result.status, result.output) == ("completed", "ok\n")
    assert run_id not in run_names(spare_backend)


def test_without_prlimit_runs_still_start_with_no_core_file(backend, py312, monkeypatch):
    """Where util-linux's prlimit is missing, the launcher cannot set the 1-byte core limit;
    runs still start, held to `ulimit -c 0` (no core file, though a piped core_pattern would
    still be started: see command.CORE_LIMIT)."""
    from executions.sandbox.local import command

    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name, **kw: None if name == command.PRLIMIT else real_which(name)
    )
    command.prlimit_found.cache_clear()
    command.core_limit_settable.cache_clear()
    try:
        assert command.prlimits(cgroup=True) == command.prlimits(cgroup=False) == []
        assert "ulimit -c 0" in command.rlimits(spec_for(py312), cgroup=True)
        script = "import resource\nprint(resource.getrlimit(resource.RLIMIT_CORE))"
        result = backend.run(spec_for(py312, script), threading.Event())
        assert (result.status, result.output) == ("completed", "(0, 0)\n"), result
    finally:
        monkeypatch.undo()
        command.prlimit_found.cache_clear()
        command.core_limit_settable.cache_clear()
    assert command.prlimits(cgroup=True) == [command.PRLIMIT, command.CORE_LIMIT, "--"]

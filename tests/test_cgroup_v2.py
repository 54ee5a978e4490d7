"""cgroup.py against a stand-in tree: the files a kernel's v2 (and v1) hierarchy would have.

This machine's v2 tree has no controllers, so the v2 classes are exercised on a directory
under tmp_path holding the interface files; what they write there is what the kernel would
be told. Processes in cgroup.procs are real (children of this test) where a kill is checked.
"""

import os
import subprocess
import time

import pytest

from executions.limits import MIB, Limits
from executions.sandbox.local import cgroup
from executions.sandbox.local.cgroup import (
    CPU_PERIOD_US,
    RUNS_CPU_SHARES,
    RUNS_CPU_WEIGHT,
    Hierarchy,
    HierarchyV1,
    HierarchyV2,
    RunCgroup,
    RunCgroupV1,
    RunCgroupV2,
    cpu_cores,
    find_hierarchy,
)

LIMITS = Limits(wall_time_s=5, cpu_time_s=5, memory_bytes=64 * MIB, processes=10, cpu_limit="500m")

# What the kernel puts in a new run group (files written to start empty: a write to a
# cgroup file replaces its value, a write to a plain file only overwrites its start).
V2_RUN_FILES = {
    "cgroup.procs": "",
    "cgroup.kill": "",
    "cgroup.freeze": "",
    "memory.max": "",
    "memory.swap.max": "",
    "pids.max": "",
    "cpu.max": "",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
    "memory.peak": "0\n",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
    "pids.events": "max 0\n",
}


def fill(directory, files):
    os.makedirs(directory, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(text)


def read(path):
    with open(path) as f:
        return f.read()


@pytest.fixture
def v2_root(tmp_path):
    root = tmp_path / "cgroup"
    fill(root, {"cgroup.controllers": "cpu memory pids\n", "cgroup.subtree_control": ""})
    # The installation's group as the kernel makes it (find's makedirs finds it there).
    fill(root / "inst", {"cgroup.subtree_control": "", "cpu.weight": "", "cgroup.procs": ""})
    return root


def make_v2_run(directory, **overrides):
    fill(directory, {**V2_RUN_FILES, **overrides})
    return RunCgroupV2({"unified": str(directory)})


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, cores",
    [
        ("1000m", 1.0),
        ("250m", 0.25),
        ("1.5", 1.5),
        (" 2 ", 2.0),
        ("0", 0.01),  # never a zero quota
        ("abc", 1.0),
        ("12xm", 1.0),
        ("", 1.0),
        (None, 1.0),
    ],
)
def test_cpu_cores_parses_kubernetes_cpu_and_falls_back_to_one_core(text, cores):
    assert cpu_cores(text) == pytest.approx(cores)


def test_stat_field_skips_unparsable_values_and_missing_keys():
    text = "oom_kill oops\nusage_usec 42\n"
    assert cgroup._stat_field(text, "oom_kill") == 0
    assert cgroup._stat_field(text, "usage_usec") == 42
    assert cgroup._stat_field(text, "absent") == 0


def test_read_of_a_missing_file_is_empty(tmp_path):
    assert cgroup._read(str(tmp_path / "nothing")) == ""


# --- v2 hierarchy ------------------------------------------------------------------------------


def test_v2_find_enables_the_controllers_and_weighs_the_runs_down(v2_root):
    hierarchy = HierarchyV2.find(str(v2_root), "inst")
    assert isinstance(hierarchy, HierarchyV2) and hierarchy.version == "v2"
    base = v2_root / "inst"
    assert hierarchy.bases == {"unified": str(base)}
    assert read(v2_root / "cgroup.subtree_control") == "+memory +pids +cpu"
    assert read(base / "cgroup.subtree_control") == "+memory +pids +cpu"
    assert read(base / "cpu.weight") == str(RUNS_CPU_WEIGHT)


def test_v2_find_without_cpu_enables_only_memory_and_pids(tmp_path):
    fill(tmp_path, {"cgroup.controllers": "memory pids io\n", "cgroup.subtree_control": ""})
    fill(tmp_path / "inst", {"cgroup.subtree_control": "", "cpu.weight": ""})
    hierarchy = HierarchyV2.find(str(tmp_path), "inst")
    assert hierarchy is not None
    assert read(tmp_path / "cgroup.subtree_control") == "+memory +pids"
    assert read(tmp_path / "inst" / "cgroup.subtree_control") == "+memory +pids"
    assert read(tmp_path / "inst" / "cpu.weight") == ""


@pytest.mark.parametrize("controllers", ["", "cpu memory\n", "cpu pids io\n"])
def test_v2_find_needs_memory_and_pids(tmp_path, controllers):
    fill(tmp_path, {"cgroup.controllers": controllers, "cgroup.subtree_control": ""})
    assert HierarchyV2.find(str(tmp_path), "inst") is None
    assert not (tmp_path / "inst").exists()


def test_v2_find_gives_up_when_subtree_control_cannot_be_written(tmp_path):
    fill(tmp_path, {"cgroup.controllers": "cpu memory pids\n"})  # no cgroup.subtree_control
    assert HierarchyV2.find(str(tmp_path), "inst") is None


def test_find_hierarchy_prefers_v2_and_needs_a_directory(v2_root, tmp_path):
    assert find_hierarchy("", "inst") is None
    assert find_hierarchy(str(tmp_path / "missing"), "inst") is None
    assert isinstance(find_hierarchy(str(v2_root), "inst"), HierarchyV2)


def test_v2_create_makes_the_directory_and_sets_limits(v2_root, monkeypatch):
    hierarchy = HierarchyV2.find(str(v2_root), "inst")
    directory = v2_root / "inst" / "run1"
    # The kernel makes the interface files on mkdir; here they are there already, since
    # create() only opens them for writing (O_WRONLY, no O_CREAT).
    real_mkdir = os.mkdir

    def kernel_mkdir(path, *args, **kwargs):
        real_mkdir(path, *args, **kwargs)
        if os.fspath(path) == str(directory):
            fill(path, V2_RUN_FILES)

    monkeypatch.setattr(cgroup.os, "mkdir", kernel_mkdir)
    group = hierarchy.create("run1", LIMITS)
    monkeypatch.undo()
    assert isinstance(group, RunCgroupV2)
    assert group.dirs == {"unified": str(directory)}
    assert group.join_paths == [f"{directory}/cgroup.procs"]
    assert read(directory / "memory.max") == str(64 * MIB)
    assert read(directory / "memory.swap.max") == "0"
    assert read(directory / "pids.max") == "12"  # bubblewrap's two on top
    assert read(directory / "cpu.max") == f"{CPU_PERIOD_US // 2} {CPU_PERIOD_US}"


def test_v2_create_without_limits_and_a_second_time(v2_root):
    hierarchy = HierarchyV2.find(str(v2_root), "inst")
    group = hierarchy.create("run1")
    assert os.path.isdir(group.dirs["unified"])
    with pytest.raises(FileExistsError):
        hierarchy.create("run1")


def test_v2_create_removes_the_directory_when_limits_fail(v2_root):
    hierarchy = HierarchyV2.find(str(v2_root), "inst")
    # A fresh directory without memory.max: the write fails and nothing is left behind.
    with pytest.raises(FileNotFoundError):
        hierarchy.create("run1", LIMITS)
    assert not (v2_root / "inst" / "run1").exists()


def test_v2_attach_and_leftovers(v2_root):
    hierarchy = HierarchyV2.find(str(v2_root), "inst")
    hierarchy.create("a")
    hierarchy.create("b")
    (v2_root / "inst" / "not-a-dir").write_text("")
    found = hierarchy.leftovers()
    assert sorted(found) == ["a", "b"]
    assert all(isinstance(g, RunCgroupV2) for g in found.values())
    assert found["a"].dirs == {"unified": str(v2_root / "inst" / "a")}
    assert hierarchy.attach("zz").dirs == {"unified": str(v2_root / "inst" / "zz")}


def test_leftovers_of_a_missing_base_is_empty(tmp_path):
    assert HierarchyV2({"unified": str(tmp_path / "gone")}).leftovers() == {}


# --- v2 run group ------------------------------------------------------------------------------


def test_v2_apply_limits_without_swap_or_cpu_files(tmp_path):
    group = make_v2_run(tmp_path / "run")
    os.remove(tmp_path / "run" / "memory.swap.max")
    os.remove(tmp_path / "run" / "cpu.max")
    group.apply_limits(Limits(memory_bytes=MIB, processes=1, cpu_limit="2"))
    assert read(tmp_path / "run" / "memory.max") == str(MIB)
    assert read(tmp_path / "run" / "pids.max") == "3"
    assert not (tmp_path / "run" / "cpu.max").exists()
    assert not (tmp_path / "run" / "memory.swap.max").exists()


def test_v2_usage_reads_cpu_peak_and_oom(tmp_path):
    group = make_v2_run(
        tmp_path / "run",
        **{
            "cpu.stat": "usage_usec 123456\nuser_usec 100000\n",
            "memory.peak": "1048576\n",
            "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
            "pids.events": "max 7\n",
        },
    )
    assert group.cpu_ms() == 123
    assert group.usage() == (123, 1024, True)
    assert group.process_limit_hits() == 7


def test_v2_usage_without_oom_or_files(tmp_path):
    group = make_v2_run(tmp_path / "run", **{"memory.peak": "garbage\n"})
    assert group.usage() == (0, None, False)
    empty = RunCgroupV2({"unified": str(tmp_path / "none")})
    assert empty.cpu_ms() is None
    assert empty.usage() == (None, None, False)
    assert empty.process_limit_hits() == 0


def test_process_limit_hits_without_a_pids_directory():
    assert RunCgroupV1({"memory": "/nonexistent"}).process_limit_hits() == 0


def test_v2_cannot_be_renamed(tmp_path):
    with pytest.raises(NotImplementedError):
        make_v2_run(tmp_path / "run").rename("other")


def test_v2_kill_of_an_empty_group_writes_cgroup_kill(tmp_path):
    group = make_v2_run(tmp_path / "run")
    group.kill()
    assert read(tmp_path / "run" / "cgroup.kill") == "1"
    assert read(tmp_path / "run" / "cgroup.freeze") == ""  # untouched: nobody to freeze
    assert group.is_empty() and group.pids() == []


def test_v2_kill_kills_listed_processes_and_freezes_meanwhile(tmp_path):
    directory = tmp_path / "run"
    group = make_v2_run(directory)
    os.remove(directory / "cgroup.kill")  # a kernel before 5.14
    proc = subprocess.Popen(["sleep", "30"])
    try:
        (directory / "cgroup.procs").write_text(f"{proc.pid}\n")
        freezes = []
        real_write = cgroup._write

        def watch(path, value):
            if path.endswith("cgroup.freeze"):
                freezes.append(value)
            if path.endswith("cgroup.freeze") and value == "0":
                # The kernel drops the dead from cgroup.procs; the stand-in is told here.
                (directory / "cgroup.procs").write_text("")
            real_write(path, value)

        cgroup._write = watch
        try:
            group.kill()
        finally:
            cgroup._write = real_write
        assert proc.wait(timeout=5) == -9
        assert freezes == ["1", "0"]
        assert not (directory / "cgroup.kill").exists()
    finally:
        proc.kill()
        proc.wait()


def test_v2_remove_of_an_empty_directory(tmp_path):
    directory = tmp_path / "run"
    directory.mkdir()
    group = RunCgroupV2({"unified": str(directory)})
    assert group.remove() is True
    assert not directory.exists()
    assert group.remove() is True  # already gone counts as removed


def test_remove_gives_up_on_a_directory_that_will_not_go(tmp_path, monkeypatch):
    # A stand-in holding files cannot be rmdir'ed (a real cgroup can once empty): _rmdir
    # keeps trying, killing what cgroup.procs lists, until its budget runs out.
    group = make_v2_run(tmp_path / "run")
    start = time.monotonic()
    assert cgroup._rmdir(group.dirs["unified"], budget_s=0.05) is False
    assert 0.05 <= time.monotonic() - start < 2
    assert (tmp_path / "run").is_dir()


def test_rmdir_kills_the_listed_processes_while_it_retries(tmp_path):
    directory = tmp_path / "run"
    fill(directory, {"cgroup.procs": ""})
    proc = subprocess.Popen(["sleep", "30"])
    try:
        (directory / "cgroup.procs").write_text(f"{proc.pid}\n999999999\n")
        assert cgroup._rmdir(str(directory), budget_s=0.05) is False
        assert proc.wait(timeout=5) == -9
    finally:
        proc.kill()
        proc.wait()


def test_rmdir_succeeds_once_the_directory_empties(tmp_path, monkeypatch):
    directory = tmp_path / "run"
    fill(directory, {"cgroup.procs": ""})
    calls = []
    real_rmdir = os.rmdir

    def rmdir(path):
        calls.append(path)
        if len(calls) == 3:  # the third try: the last process has left
            os.remove(os.path.join(path, "cgroup.procs"))
        real_rmdir(path)

    monkeypatch.setattr(cgroup.os, "rmdir", rmdir)
    assert cgroup._rmdir(str(directory)) is True
    assert len(calls) == 3 and not directory.exists()


# --- the base classes --------------------------------------------------------------------------


def test_the_base_classes_leave_everything_to_v1_and_v2(tmp_path):
    group = RunCgroup({"unified": str(tmp_path)})
    for call in (
        lambda: group.apply_limits(LIMITS),
        group.kill,
        group.usage,
        lambda: group.rename("x"),
        group.cpu_ms,
    ):
        with pytest.raises(NotImplementedError):
            call()
    hierarchy = Hierarchy({"unified": str(tmp_path)})
    with pytest.raises(NotImplementedError):
        hierarchy.create("x")
    with pytest.raises(NotImplementedError):
        hierarchy.attach("x")


# --- v1 on a stand-in tree ---------------------------------------------------------------------


@pytest.fixture
def v1_root(tmp_path):
    root = tmp_path / "v1"
    for controller in ("memory", "pids", "cpu,cpuacct", "freezer"):
        (root / controller).mkdir(parents=True)
    os.symlink("cpu,cpuacct", root / "cpu")
    os.symlink("cpu,cpuacct", root / "cpuacct")
    return root


def test_v1_find_shares_one_base_for_cpu_and_cpuacct(v1_root):
    hierarchy = HierarchyV1.find(str(v1_root), "inst")
    assert hierarchy is not None and hierarchy.version == "v1"
    cpu_base = f"{v1_root}/cpu,cpuacct/inst"
    assert hierarchy.bases == {
        "memory": f"{v1_root}/memory/inst",
        "pids": f"{v1_root}/pids/inst",
        "cpu": cpu_base,
        "cpuacct": cpu_base,
        "freezer": f"{v1_root}/freezer/inst",
    }
    # cpu.shares is not there to write in a stand-in (no O_CREAT): find goes on without it.
    assert not os.path.exists(f"{cpu_base}/cpu.shares")
    group = hierarchy.attach("run")
    assert group.join_paths == [
        f"{v1_root}/memory/inst/run/cgroup.procs",
        f"{v1_root}/pids/inst/run/cgroup.procs",
        f"{cpu_base}/run/cgroup.procs",
        f"{v1_root}/freezer/inst/run/cgroup.procs",
    ]


def test_v1_find_writes_cpu_shares_when_there(v1_root):
    (v1_root / "cpu,cpuacct" / "inst").mkdir()
    (v1_root / "cpu,cpuacct" / "inst" / "cpu.shares").write_text("")
    HierarchyV1.find(str(v1_root), "inst")
    assert read(v1_root / "cpu,cpuacct" / "inst" / "cpu.shares") == str(RUNS_CPU_SHARES)


def test_v1_find_needs_memory_and_pids(tmp_path):
    (tmp_path / "memory").mkdir()
    assert HierarchyV1.find(str(tmp_path), "inst") is None


def test_v1_find_skips_an_optional_controller_it_cannot_write(v1_root, monkeypatch):
    real_makedirs = os.makedirs

    def makedirs(path, *args, **kwargs):
        if "/freezer/" in os.fspath(path):
            raise PermissionError(13, "Permission denied", path)
        return real_makedirs(path, *args, **kwargs)

    monkeypatch.setattr(cgroup.os, "makedirs", makedirs)
    hierarchy = HierarchyV1.find(str(v1_root), "inst")
    assert hierarchy is not None and "freezer" not in hierarchy.bases
    assert set(hierarchy.bases) == {"memory", "pids", "cpu", "cpuacct"}


def test_v1_find_fails_when_a_required_controller_is_not_writable(v1_root, monkeypatch):
    real_makedirs = os.makedirs

    def makedirs(path, *args, **kwargs):
        if "/pids/" in os.fspath(path):
            raise PermissionError(13, "Permission denied", path)
        return real_makedirs(path, *args, **kwargs)

    monkeypatch.setattr(cgroup.os, "makedirs", makedirs)
    assert HierarchyV1.find(str(v1_root), "inst") is None


def test_v1_create_undoes_its_directories_when_limits_fail(v1_root):
    hierarchy = HierarchyV1.find(str(v1_root), "inst")
    with pytest.raises(FileNotFoundError):  # no memory.limit_in_bytes in the stand-in
        hierarchy.create("run", LIMITS)
    for base in set(hierarchy.bases.values()):
        assert not os.path.exists(f"{base}/run")


def test_v1_limits_and_usage_on_stand_in_files(tmp_path):
    dirs = {}
    for controller in ("memory", "pids", "cpu", "freezer"):
        dirs[controller] = str(tmp_path / controller)
    fill(dirs["memory"], {
        "memory.limit_in_bytes": "", "memory.max_usage_in_bytes": "2097152\n",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\n",
        "memory.memsw.failcnt": "2\n", "cgroup.procs": "",
    })  # fmt: skip
    fill(dirs["pids"], {"pids.max": "", "pids.events": "max 4\n"})
    fill(dirs["cpu"], {"cpu.cfs_quota_us": ""})
    fill(dirs["freezer"], {"freezer.state": "THAWED"})
    group = RunCgroupV1(dirs)
    group.apply_limits(LIMITS)  # no memsw file: swap accounting off
    assert read(tmp_path / "memory" / "memory.limit_in_bytes") == str(64 * MIB)
    assert read(tmp_path / "pids" / "pids.max") == "12"
    assert read(tmp_path / "cpu" / "cpu.cfs_quota_us") == str(CPU_PERIOD_US // 2)
    # No cpuacct: no CPU time; a kernel before 4.13 tells OOM only by memsw.failcnt.
    assert group.usage() == (None, 2048, True)
    assert group.process_limit_hits() == 4
    (tmp_path / "memory" / "memory.memsw.failcnt").write_text("bad")
    assert group.usage() == (None, 2048, False)


def test_v1_cpu_ms_of_an_unreadable_cpuacct(tmp_path):
    fill(tmp_path, {"cpuacct.usage": "n/a"})
    assert RunCgroupV1({"cpuacct": str(tmp_path)}).cpu_ms() is None
    (tmp_path / "cpuacct.usage").write_text("2500000000")
    assert RunCgroupV1({"cpuacct": str(tmp_path)}).cpu_ms() == 2500


def test_v1_kill_freezes_kills_and_thaws(tmp_path):
    dirs = {"memory": str(tmp_path / "memory"), "freezer": str(tmp_path / "freezer")}
    fill(dirs["memory"], {"cgroup.procs": ""})
    fill(dirs["freezer"], {"freezer.state": "THAWED"})
    proc = subprocess.Popen(["sleep", "30"])
    states = []
    real_write = cgroup._write

    def watch(path, value):
        if path.endswith("freezer.state"):
            states.append(value)
            if value == "THAWED":
                (tmp_path / "memory" / "cgroup.procs").write_text("")
        real_write(path, value)

    try:
        (tmp_path / "memory" / "cgroup.procs").write_text(f"{proc.pid}\n")
        cgroup._write = watch
        try:
            RunCgroupV1(dirs).kill()
        finally:
            cgroup._write = real_write
        assert proc.wait(timeout=5) == -9
        assert states == ["FROZEN", "THAWED"]
    finally:
        proc.kill()
        proc.wait()

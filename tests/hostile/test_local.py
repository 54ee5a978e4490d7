"""The hostile-script suite against the local backend (real bubblewrap, real cgroups)."""

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace

import pytest
from django.conf import settings

from executions import runtimes
from executions.sandbox.contract import RunSpec
from executions.sandbox.local import SANDBOX_UID, LocalBackend
from tests.conftest import SANDBOX_TEST_NAME as TEST_NAME
from tests.hostile.cases import (
    BASE_LIMITS,
    CASES,
    DAEMON_TOKEN,
    FAILS,
    LOCAL_CASES,
    SECRET_ENV,
    SECRET_VALUE,
    Case,
    HostContext,
    check_case,
)

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


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
    backend.settle()  # run() tears its sandbox down in a thread
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
    [
        pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.slow else [])
        for c in CASES + LOCAL_CASES
    ],
)
def test_hostile_case(case, backend, runtime, host):
    check_case(case, make_run(backend, runtime), host)
    assert leftover_cgroups(backend) == []
    if case.host_checks:
        assert host_processes_with(DAEMON_TOKEN) == []


def test_hostile_cases_under_rlimits_only(runtime, host):
    """Without cgroups the rlimit fallback still holds memory, CPU and output."""
    backend = LocalBackend(cgroup_root=None, name=TEST_NAME)
    wanted = {
        "memory_bomb", "cpu_spin", "stdout_flood", "network_egress", "daemon_outlives_run",
        "children_share_one_cpu_limit", "kernel_interfaces_refused", "ptrace_sandbox_init",
        "rlimits_memfd_outside_memory_limit", "rlimits_cpu_limit_escaped_by_autoreaped_children",
        "unix_socket_buffers_are_charged", "pipe_buffers_are_charged",
        "cover_mounts_are_read_only", "hugetlb_pool_refused", "fsync_reaches_host_disk",
        "core_dumps_reach_the_host_helper", "posix_timers_hold_kernel_memory",
        "tmpfs_inodes_outside_the_memory_limit",
    }  # fmt: skip
    for case in CASES + LOCAL_CASES:
        if case.name == "memory_bomb":
            # Only the script's own MemoryError says so (address-space rlimit), and nothing a
            # script prints is a platform fact: its error, with the traceback to show why.
            case = replace(case, status=("completed",), error_type=("script_error",))
        if case.name in ("children_share_one_cpu_limit", "daemon_outlives_run"):
            # Without cgroups a run is one process: the fork itself is refused.
            case = replace(
                case, status=("completed",), error_type=("script_error",), output_has=(), check=None
            )
        if case.name in wanted:
            result = check_case(case, make_run(backend, runtime), host)
            if case.name in ("children_share_one_cpu_limit", "daemon_outlives_run"):
                assert "PermissionError" in result.errors, result
            if case.name == "tmpfs_inodes_outside_the_memory_limit":
                # Counted by the supervisor: the run is stopped at its memory limit.
                assert (result.status, result.error_type) == ("failed", "memory_limit"), result
    assert host_processes_with(DAEMON_TOKEN) == []


# --- the sandbox is not host root ------------------------------------------------------------


def host_uid_ok(backend, uid: int) -> bool:
    """Who the sandbox may be on the host: a uid of SANDBOX_HOST_UIDS under a root worker,
    else the caller."""
    return uid in backend.uids.uids if backend.uids else uid == os.getuid()


def status_fields(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def start_sleeper(backend, runtime, seconds: float = 20):
    """A sandboxed script that waits; returns (thread, cancel, results, run cgroup procs path)."""
    if backend.hierarchy is None:
        pytest.skip("no writable cgroup tree: the run's processes are found through it")
    run_id = uuid.uuid4().hex
    spec = RunSpec(
        f"import time\nprint('up', flush=True)\ntime.sleep({seconds})\n",
        runtime,
        replace(BASE_LIMITS, wall_time_s=seconds + 5),
        run_id=run_id,
    )
    cancel, results = threading.Event(), []
    thread = threading.Thread(target=lambda: results.append(backend.run(spec, cancel)))
    thread.start()
    procs = f"{backend.hierarchy.attach(run_id).dirs['pids']}/cgroup.procs"
    return thread, cancel, results, procs


def sandboxed_pythons(procs_path: str, executable: str, timeout: float = 5) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = []
        with contextlib.suppress(OSError):
            for pid in map(int, open(procs_path).read().split()):
                with contextlib.suppress(OSError):
                    cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
                    if cmdline[0] == executable.encode() and b"/scripts/script.py" in b" ".join(
                        cmdline
                    ):
                        found.append(pid)
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("the sandboxed interpreter never showed up in its cgroup")


def test_sandbox_processes_are_the_unprivileged_host_uid(backend, runtime):
    """Seen from the host, every process of a run (bubblewrap's too) is SANDBOX_HOST_UID with
    no supplementary groups and no capabilities, and the sandbox's user namespace maps its
    uid to that host uid, not to 0."""
    thread, cancel, results, procs = start_sleeper(backend, runtime)
    try:
        pythons = sandboxed_pythons(procs, runtime.executable)
        everyone = [int(p) for p in open(procs).read().split()]
        assert len(everyone) >= 3  # bubblewrap's monitor, its pid 1, the script
        uid = int(status_fields(everyone[0])["Uid"].split()[0])
        gid = int(status_fields(everyone[0])["Gid"].split()[0])
        assert uid != 0 and host_uid_ok(backend, uid), uid
        for pid in everyone:
            fields = status_fields(pid)
            assert fields["Uid"].split() == [str(uid)] * 4, (pid, fields["Uid"])
            assert fields["Gid"].split() == [str(gid)] * 4, (pid, fields["Gid"])
            if backend.uids:
                assert fields["Groups"].strip() == "", (pid, fields["Groups"])
            # Capabilities in the init namespace: none (those in its own namespace do not count).
            assert int(fields["CapEff"], 16) == 0 or pid not in pythons
        for pid in pythons:
            assert int(status_fields(pid)["CapEff"], 16) == 0
            # Read from the host, the map's second column is a host uid.
            (inside, outside, count), *_ = (
                line.split() for line in open(f"/proc/{pid}/uid_map").read().splitlines()
            )
            assert (inside, outside) == (str(SANDBOX_UID), str(uid)), (inside, outside, count)
    finally:
        cancel.set()
        thread.join(10)
    assert results and results[0].status == "cancelled", results


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid drop is for workers running as root")
def test_the_host_uid_alone_stops_signals_to_host_root(runtime, host):
    """The sandbox minus its pid namespace (host pids in reach, "guessed"): being uid
    SANDBOX_HOST_UID on the host, the script still may not signal root's processes (EPERM),
    where a sandbox mapped to host root could have killed them."""
    backend = SharedPidBackend(name=TEST_NAME, spares=0)
    try:
        script = FAILS(
            [
                "import os, signal",
                "print('ppid', os.getppid())",
                "outcomes = []",
                "for pid, sig in ((VICTIM_PID, signal.SIGKILL), (VICTIM_PID, 0), (1, 0)):",
                "    try:",
                "        os.kill(pid, sig)",
                "        outcomes.append(f'BREACH signalled {pid}')",
                "    except PermissionError:",
                "        outcomes.append('SAFE EPERM')",
                "    except OSError as exc:",
                "        outcomes.append(f'unexpected {pid} {exc!r}')",
                "print(*outcomes)",
                "print('SAFE' if outcomes == ['SAFE EPERM'] * 3 else 'BREACH')",
            ]
        )
        case = Case("signal_host_root_with_host_pids_in_reach", script, host_checks=True)
        result = check_case(case, make_run(backend, runtime), host)
        assert "unexpected" not in result.output, result.output
    finally:
        backend.close()


class SharedPidBackend(LocalBackend):
    """Tests only: the sandbox without its pid namespace (and so without its own /proc)."""

    def sandbox_args(self, spec, source):
        args = super().sandbox_args(spec, source)
        i = args.index("--unshare-all")
        args[i : i + 1] = ["--unshare-ipc", "--unshare-net", "--unshare-uts", "--unshare-cgroup"]
        i = args.index("--proc")
        del args[i : i + 2]
        while any(a.startswith("/proc/") for a in args):
            j = next(k for k, a in enumerate(args) if a.startswith("/proc/"))
            # --ro-bind /dev/null /proc/x, --remount-ro /proc/x, or --perms 0555 --tmpfs /proc/x
            start = {"/dev/null": j - 2, "--remount-ro": j - 1}.get(args[j - 1], j - 3)
            del args[start : j + 1]
        return args


@pytest.mark.skipif(os.geteuid() != 0, reason="SANDBOX_HOST_UIDS applies to a root worker")
def test_sandbox_host_uids_are_configurable_and_never_root(runtime):
    for bad in ("0-10", "10-5", "many", "1-4294967295"):
        with pytest.raises(ValueError, match="SANDBOX_HOST_UIDS"):
            LocalBackend(name=TEST_NAME, host_uids=bad)
    backend = LocalBackend(name=TEST_NAME, spares=0, host_uids="54321-54321")
    try:
        thread, cancel, results, procs = start_sleeper(backend, runtime)
        try:
            pid = sandboxed_pythons(procs, runtime.executable)[0]
            assert status_fields(pid)["Uid"].split() == ["54321"] * 4
            # Its one uid is taken while that run lives: another run has none to run as.
            busy = make_run(backend, runtime)("print(1)", BASE_LIMITS, "")
            assert (busy.status, busy.error_type) == ("failed", "system_error"), busy
            assert "SANDBOX_HOST_UIDS" in busy.reason
        finally:
            cancel.set()
            thread.join(10)
        result = make_run(backend, runtime)("print(7 * 6)", BASE_LIMITS, "")
        assert (result.status, result.output) == ("completed", "42\n"), result.errors
    finally:
        backend.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="host uids are leased by a root worker")
def test_concurrent_runs_are_different_host_uids(backend, runtime):
    """Per-user kernel quotas are per host uid: each live sandbox has its own."""
    first = start_sleeper(backend, runtime)
    second = start_sleeper(backend, runtime)
    try:
        uids = {
            status_fields(sandboxed_pythons(procs, runtime.executable)[0])["Uid"].split()[0]
            for _, _, _, procs in (first, second)
        }
        assert len(uids) == 2, uids
    finally:
        for thread, cancel, _, _ in (first, second):
            cancel.set()
            thread.join(10)


def test_staging_leaves_the_host_alone(runtime):
    """The interpreters are staged in a private mount namespace: the host's mounts (and the
    directory the stage's tmpfs covers there) do not change, and close() ends the stage."""
    before = sorted(os.listdir("/mnt")) if os.path.isdir("/mnt") else None
    backend = LocalBackend(name=TEST_NAME, spares=1)
    try:
        result = make_run(backend, runtime)("print('ok')", BASE_LIMITS, "")
        assert result.output == "ok\n", result.errors
        with open("/proc/self/mountinfo") as f:
            assert "integr8s-stage" not in f.read()
        assert (sorted(os.listdir("/mnt")) if os.path.isdir("/mnt") else None) == before
        stages = list(backend._stages)
        assert bool(stages) == bool(backend.uids)
    finally:
        backend.close()
    for stage in stages:
        assert stage.proc.returncode is not None


@pytest.mark.skipif(os.geteuid() != 0, reason="host uids are leased by a root worker")
def test_one_run_cannot_use_up_another_run_s_per_user_kernel_quota(backend, runtime):
    """Pipe buffer pages are counted per host uid (fs.pipe-user-pages-soft): a run that takes
    them all would leave the next run's pipes one page deep, were they the same uid."""
    hog = FAILS(
        [
            "import fcntl, os, time",
            "pipes = []",
            "for _ in range(100):",
            "    r, w = os.pipe()",
            "    try:",
            "        fcntl.fcntl(w, 1031, 1 << 20)  # F_SETPIPE_SZ: pages are counted, not used",
            "    except OSError:",
            "        break",
            "    pipes.append((r, w))",
            "print('holding', len(pipes), flush=True)",
            "time.sleep(6)",
        ]
    )
    probe = FAILS(
        [
            "import fcntl, os",
            "r, w = os.pipe()",
            "size = fcntl.fcntl(w, 1032)  # F_GETPIPE_SZ",
            "print('SAFE' if size >= 65536 else 'BREACH', size)",
        ]
    )
    cancel, results = threading.Event(), []
    spec = RunSpec(hog, runtime, replace(BASE_LIMITS, wall_time_s=10), run_id=uuid.uuid4().hex)
    thread = threading.Thread(target=lambda: results.append(backend.run(spec, cancel)))
    thread.start()
    try:
        time.sleep(2)  # the hog has its pipes by now
        result = make_run(backend, runtime)(probe, BASE_LIMITS, "")
    finally:
        cancel.set()
        thread.join(15)
    assert "SAFE" in result.output, (result.output, results)
    # It held the whole soft quota (64 pipes of 1 MiB are 16384 pages).
    assert results and "holding 64" in results[0].output, results


def test_another_installation_s_cleanup_leaves_our_runs_alone(backend, runtime):
    """Two installations on one host (a site and its tests, two checkouts) have cgroups under
    different names; one's start-up clean-up never touches the other's live runs."""
    other = LocalBackend(name=f"{TEST_NAME}-other", spares=0)
    try:
        thread, cancel, results, procs = start_sleeper(backend, runtime, seconds=3)
        try:
            sandboxed_pythons(procs, runtime.executable)
            assert other.cleanup_stale(set()) == 0
            assert open(procs).read().split(), "our run's cgroup was emptied"
        finally:
            thread.join(15)
        assert results and results[0].status == "completed", results
    finally:
        other.close()
        for base in other.hierarchy.bases.values() if other.hierarchy else ():
            with contextlib.suppress(OSError):
                os.rmdir(base)


def test_the_default_installation_name_follows_the_checkout_and_the_database():
    """SANDBOX_NAME's default differs between checkouts and databases on one host."""
    code = (
        "import django; django.setup()\n"
        "from django.conf import settings; print(settings.SANDBOX_NAME)"
    )

    def name(**env):
        full = {k: v for k, v in os.environ.items() if k != "SANDBOX_NAME"}
        full |= {"DJANGO_SETTINGS_MODULE": "integr8s.settings", **env}
        done = subprocess.run(
            [sys.executable, "-c", code], env=full, capture_output=True, text=True,
            cwd=settings.BASE_DIR,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    sqlite = name()
    postgres = name(DATABASE_URL="postgres://postgres@127.0.0.1:5432/other")
    assert sqlite.startswith("integr8s-") and postgres.startswith("integr8s-")
    assert sqlite != postgres
    assert name(SANDBOX_NAME="chosen") == "chosen"


def test_many_output_files_cost_the_worker_little(backend, runtime, monkeypatch):
    """A script that leaves tens of thousands of files in /tmp/outputs (empty files cost it only
    inodes) made the worker open and stat every one when the run ended, as root, on its own
    time: 80,000 took 0.8 s of the worker's after a 2 s run. Only the files that can still be
    kept, and a few past the cap, are opened now."""
    # The package's name `supervise` is the function; the module is this one.
    supervise = sys.modules["executions.sandbox.local.supervise"]

    opened = []
    real_open, real_collect = os.open, supervise.collect_outputs

    def counting_open(path, *args, **kwargs):
        opened.append(path)
        return real_open(path, *args, **kwargs)

    def collect(*args):
        monkeypatch.setattr(os, "open", counting_open)
        try:
            return real_collect(*args)
        finally:
            monkeypatch.setattr(os, "open", real_open)

    monkeypatch.setattr(supervise, "collect_outputs", collect)
    script = FAILS(
        [
            "import os",
            "os.makedirs('/tmp/outputs', exist_ok=True)",
            "for i in range(20000):",
            "    os.close(os.open(f'/tmp/outputs/f{i:05d}', os.O_CREAT | os.O_WRONLY))",
            "os.symlink('/etc/passwd', '/tmp/outputs/link')",
            "print('left 20000 files')",
        ]
    )
    result = make_run(backend, runtime)(script, replace(BASE_LIMITS, wall_time_s=20), "")
    assert result.output == "left 20000 files\n", result
    assert result.error_type == "output_limit" and len(result.files) == BASE_LIMITS.output_files
    assert [name for name, _ in result.files][:2] == ["f00000", "f00001"]
    assert len(opened) <= BASE_LIMITS.output_files + 110, len(opened)


def test_what_a_script_prints_never_reaches_the_worker_s_log(backend, runtime, caplog):
    """A script that wrote `bwrap: ...` and a second line to stderr and exited 1 was a platform
    failure, and its second line landed in the worker's log as if the worker wrote it (enough
    of them page the operators through the system-error alert). It is the script's error now,
    and the worker logs nothing of it."""
    import logging

    forged = next(c for c in CASES if c.name == "forged_sandbox_error")
    with caplog.at_level(logging.DEBUG, logger="executions"):
        result = make_run(backend, runtime)(forged.script, BASE_LIMITS, "")
    assert (result.status, result.error_type) == ("completed", "script_error"), result
    assert "forged log line" in result.errors
    assert "forged log line" not in caplog.text and "mount proc" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_output_in_tiny_writes_costs_the_worker_little(backend, runtime):
    """A script that wrote its output one byte a write woke the supervision loop for each: the
    worker (whose CPU weight is the host's default, not the runs' eighth of it) spent as much
    CPU reading as the script spent writing, ~1 s of its time a second. Past a few reads a tick
    the output gathers in the pipe for 5 ms before the next read."""
    script = FAILS(
        [
            "import os, time",
            "start, n = time.monotonic(), 0",
            "while time.monotonic() - start < 1.5 and n < 500_000:",
            "    os.write(1, b'x')",
            "    n += 1",
            "os.write(2, f'{n} writes'.encode())",
        ]
    )
    before = time.thread_time()  # the run is supervised in this thread
    result = make_run(backend, runtime)(script, BASE_LIMITS, "")
    worker_s = time.thread_time() - before
    assert result.status == "completed" and result.output == "x" * len(result.output), result
    assert len(result.output) == int(result.errors.split()[0]), result.errors
    assert result.cpu_time_ms is not None and result.cpu_time_ms > 300, result
    assert worker_s < 0.25 * result.cpu_time_ms / 1000, (worker_s, result.cpu_time_ms)

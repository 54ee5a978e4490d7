"""The local sandbox backend doing ordinary things (attacks live in tests/hostile/)."""

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from executions import runtimes
from executions.limits import KIB, MIB, Limits
from executions.sandbox.contract import RunSpec
from executions.sandbox.local import LocalBackend, stage_root
from tests.conftest import SANDBOX_TEST_NAME as TEST_NAME
from tests.hostile.cases import SEED_DEMO, SEED_DEMO_OUTPUT

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")

LIMITS = Limits(wall_time_s=5, cpu_time_s=5, memory_bytes=128 * MIB, processes=64)


def runtime_for(version: str):
    found = runtimes.available("local")
    if version not in found:
        pytest.skip(f"Python {version} is not installed here (found: {', '.join(found)})")
    return found[version]


@pytest.fixture(scope="module")
def backend():
    backend = LocalBackend(name=TEST_NAME)
    yield backend
    backend.close()


def leftover_runs(backend) -> set[str]:
    """Run cgroups still present (spare launchers waiting for the next run do not count)."""
    backend.settle()  # run() tears its sandbox down in a thread
    if backend.hierarchy is None:
        return set()
    return {n for n in backend.hierarchy.leftovers() if not n.startswith("spare-")}


@pytest.fixture(scope="module")
def py312():
    return runtime_for("3.12")


def run(backend, runtime, script, stdin="", cancel=None, **limits):
    spec = RunSpec(script, runtime, replace(LIMITS, **limits), stdin, run_id=uuid.uuid4().hex)
    return backend.run(spec, cancel or threading.Event())


def test_it_runs_hello_world(backend, py312):
    result = run(backend, py312, "print('hello, world')")
    assert (result.status, result.exit_code, result.error_type) == ("completed", 0, None)
    assert result.output == "hello, world\n"
    assert result.errors == ""
    assert result.python_version == "3.12"
    assert result.wall_time_ms > 0 and result.cpu_time_ms is not None
    assert result.peak_memory_kb > 0


def test_it_reports_exceptions_with_the_script_path(backend, py312):
    result = run(backend, py312, "x = 1\nraise ValueError('bad value')\n")
    assert (result.status, result.exit_code, result.error_type) == ("completed", 1, "script_error")
    assert 'File "/scripts/script.py", line 2' in result.errors
    assert "ValueError: bad value" in result.errors


def test_it_keeps_exit_codes(backend, py312):
    result = run(backend, py312, "import sys\nprint('bye')\nsys.exit(3)")
    assert (result.status, result.exit_code, result.error_type) == ("completed", 3, "script_error")
    assert result.output == "bye\n"


def test_it_feeds_stdin(backend, py312):
    result = run(backend, py312, "import sys\nprint(sys.stdin.read().upper())", stdin="abc\ndef")
    assert result.output == "ABC\nDEF\n"


def test_it_handles_unicode_and_invalid_utf8(backend, py312):
    script = (
        "import sys\nprint('héllo ✓ 日本')\nsys.stdout.flush()\n"
        "sys.stdout.buffer.write(b'\\xff\\xfe ok\\n')"
    )
    result = run(backend, py312, script)
    assert result.output == "héllo ✓ 日本\n\ufffd\ufffd ok\n"


def test_it_imports_the_standard_library(backend, py312):
    script = (
        "import json, re, collections, asyncio, sqlite3, decimal, datetime, ctypes\n"
        "async def main():\n    return json.dumps(collections.Counter('aab'))\n"
        "print(asyncio.run(main()), sqlite3.connect(':memory:').execute('select 2').fetchone())\n"
    )
    result = run(backend, py312, script)
    assert result.status == "completed", result.errors
    assert result.output == '{"a": 2, "b": 1} (2,)\n'


def test_it_returns_large_legal_output(backend, py312):
    result = run(backend, py312, "import sys\nsys.stdout.write('a' * (900 * 1024))")
    assert result.status == "completed"
    assert len(result.output) == 900 * 1024
    assert not result.output_truncated


def test_it_caps_output_at_the_limit(backend, py312):
    result = run(backend, py312, "print('x' * 5000)", output_bytes=1 * KIB)
    assert (result.status, result.error_type) == ("failed", "output_limit")
    assert result.output == "x" * 1024
    assert result.output_truncated and "1 KiB" in result.reason


@pytest.mark.parametrize("version", ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"])
def test_it_runs_each_python_version(backend, version):
    runtime = runtime_for(version)
    result = run(backend, runtime, "import sys\nprint('%d.%d' % sys.version_info[:2])")
    assert result.output == f"{version}\n", result.errors


def test_the_seed_demo_completes_on_3_12(backend, py312):
    result = run(backend, py312, SEED_DEMO)
    assert (result.status, result.exit_code, result.error_type) == ("completed", 0, None)
    assert result.output == SEED_DEMO_OUTPUT


def test_the_seed_demo_is_a_syntax_error_on_3_9(backend):
    result = run(backend, runtime_for("3.9"), SEED_DEMO)
    assert (result.status, result.error_type) == ("completed", "script_error")
    assert result.exit_code == 1
    assert "SyntaxError" in result.errors


def test_concurrent_runs_do_not_see_each_other(backend, py312):
    script = (
        "import os, time\n"
        "name = input()\n"
        "open(f'/tmp/{name}', 'w').write(name)\n"
        "time.sleep(0.3)\n"
        "print(sorted(set(os.listdir('/tmp')) - {'outputs'}))\n"
    )
    results = {}

    def one(name):
        results[name] = run(backend, py312, script, stdin=name + "\n")

    threads = [threading.Thread(target=one, args=(f"run{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, result in results.items():
        assert result.status == "completed", result.errors
        assert result.output == f"['{name}']\n"


def test_cancel_stops_the_run_within_a_second(backend, py312):
    cancel = threading.Event()
    token = f"cancel-me-{uuid.uuid4().hex}"
    script = f"import time\nprint('started', flush=True)\ntime.sleep(30)  # {token}\n"
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    result = run(backend, py312, script, cancel=cancel, wall_time_s=30)
    assert time.monotonic() - started < 1.5
    assert (result.status, result.error_type) == ("cancelled", "cancelled")
    assert result.output == "started\n"
    assert result.reason
    assert leftover_runs(backend) == set()


def test_a_missing_interpreter_is_a_system_error(backend):
    missing = runtimes.Runtime("3.99", executable="/nonexistent/python3.99")
    result = run(backend, missing, "print(1)")
    assert (result.status, result.error_type) == ("failed", "system_error")
    assert "3.99" in result.reason


def test_a_sandbox_that_cannot_start_is_a_system_error(py312, monkeypatch):
    monkeypatch.setattr("executions.sandbox.local.command.BWRAP", "/nonexistent/bwrap")
    broken = LocalBackend(name=TEST_NAME, spares=0)
    result = run(broken, py312, "print(1)")
    assert (result.status, result.error_type, result.exit_code) == (
        "failed",
        "system_error",
        None,
    )
    assert "could not start" in result.reason and "bwrap" in result.reason
    assert leftover_runs(broken) == set()


def test_cleanup_stale_removes_leftovers_but_keeps_live_runs(backend, py312):
    if backend.hierarchy is None:
        pytest.skip("no writable cgroup tree here")
    stale = backend.hierarchy.create("stale-run", LIMITS)
    live = backend.hierarchy.create("live-run", LIMITS)
    # A process left inside the stale cgroup, as if the worker had crashed mid-run.
    sleeper = subprocess.Popen(
        ["/bin/sh", "-c", f"echo 0 > {stale.join_paths[0]} && exec sleep 60"]
    )
    try:
        deadline = time.monotonic() + 2
        while not open(stale.join_paths[0]).read().strip() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert backend.cleanup_stale(live_run_ids={"live-run"}) >= 1
        assert sleeper.wait(timeout=2) == -9
        assert leftover_runs(backend) == {"live-run"}
    finally:
        sleeper.kill()
        sleeper.wait()
        live.remove()
        stale.remove()
    assert leftover_runs(backend) == set()


def wait_for_spares(backend, count: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while len(backend.spares.held()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(backend.spares.held()) == count


def test_close_removes_the_spare_launchers(py312):
    backend = LocalBackend(name=TEST_NAME, spares=2)
    if backend.spares.per_recipe == 0:
        pytest.skip("spare launchers are used with cgroup v1 only")
    assert run(backend, py312, "print(1)").output == "1\n"
    wait_for_spares(backend, 2)  # made in the background, while the run went
    spares = [launcher.group.dirs["memory"] for launcher in backend.spares.held()]
    assert len(spares) == 2 and all(os.path.isdir(d) for d in spares)
    assert run(backend, py312, "print(2)").output == "2\n"  # takes a spare, makes another
    wait_for_spares(backend, 2)
    backend.close()
    assert not any(os.path.isdir(d) for d in spares)
    assert backend.spares.held() == []


def test_the_rlimit_fallback_still_enforces_memory_and_time(py312, caplog):
    fallback = LocalBackend(cgroup_root="/nonexistent", name=TEST_NAME)
    assert fallback.hierarchy is None and fallback.mode == "rlimits"
    memory = run(fallback, py312, "print('hi')\nx = b'x' * (400 * 1024 * 1024)")
    # Nothing but the script's own stderr says MemoryError here, and that is not a platform
    # fact (a script can print it): the run is the script's error, the traceback shows why.
    assert (memory.status, memory.error_type) == ("completed", "script_error")
    assert memory.output == "hi\n" and "MemoryError" in memory.errors
    sleepy = run(fallback, py312, "import time\ntime.sleep(30)", wall_time_s=1)
    assert (sleepy.status, sleepy.error_type) == ("timeout", "timeout")
    spin = run(fallback, py312, "while True: pass", cpu_time_s=1, wall_time_s=5)
    assert (spin.status, spin.error_type) == ("timeout", "timeout")
    assert "CPU" in spin.reason
    ok = run(fallback, py312, "print(sum(range(10)))")
    assert (ok.status, ok.output) == ("completed", "45\n")


def test_nothing_is_left_running_after_a_run(backend, py312):
    token = f"leftover-{uuid.uuid4().hex}"
    script = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)', '{token}'])\n"
        "print('spawned')\n"
    )
    result = run(backend, py312, script)
    assert result.output == "spawned\n"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                assert token.encode() not in f.read()
        except OSError:
            pass


# --- site: exit() and quit() work, site-packages stay out -----------------------------------


def test_exit_and_quit_work(backend, py312):
    result = run(backend, py312, "print('before')\nexit(3)\nprint('after')")
    assert (result.status, result.exit_code, result.error_type) == ("completed", 3, "script_error")
    assert result.output == "before\n"
    result = run(backend, py312, "quit()\nprint('after')")
    assert (result.status, result.exit_code, result.error_type) == ("completed", 0, None)
    assert result.output == "" and result.errors == ""
    result = run(backend, py312, "exit('bye')")
    assert (result.exit_code, result.errors) == (1, "bye\n")


@pytest.mark.parametrize("version", ["3.8", "3.13"])
def test_exit_works_on_the_oldest_and_newest(backend, version):
    result = run(backend, runtime_for(version), "exit(5)")
    assert (result.status, result.exit_code) == ("completed", 5), result.errors


def test_the_site_builtins_exist_but_not_site_packages(backend, py312):
    # site itself is skipped (-S, for speed); the prelude supplies what users expect of it.
    script = (
        "import sys\n"
        "print(sys.flags.no_site, sys.flags.isolated, sys.flags.no_user_site)\n"
        "print(all(callable(f) for f in (help, exit, quit)))\n"
        "print('os' not in sys.modules)\n"  # the prelude stays as light as -S itself
        "try:\n    import pip\nexcept ImportError as exc:\n    print(type(exc).__name__)\n"
    )
    result = run(backend, py312, script)
    assert result.status == "completed", result.errors
    assert result.output == "1 1 1\nTrue\nTrue\nModuleNotFoundError\n"


def test_it_keeps_the_script_path_in_tracebacks_with_site(backend, py312):
    result = run(backend, py312, "def f():\n    1 / 0\nf()\n")
    assert result.exit_code == 1
    assert 'File "/scripts/script.py", line 3, in <module>' in result.errors
    assert "ZeroDivisionError" in result.errors


def test_a_script_larger_than_a_pipe_buffer(backend, py312):
    script = "x = 0\n" + "x += 1\n" * 40_000 + "print(x)\n"  # ~280 KB
    result = run(backend, py312, script, stdin="z" * 200_000)
    assert (result.status, result.output) == ("completed", "40000\n"), result.errors


def test_stage_root_is_the_child_of_the_deepest_closed_directory(tmp_path):
    closed = tmp_path / "closed"
    (closed / "open" / "prefix").mkdir(parents=True)
    prefix = str(closed / "open" / "prefix")
    try:
        closed.chmod(0o700)
        assert stage_root(prefix, 65534, 65534) == str(closed / "open")
        (closed / "open").chmod(0o700)  # deeper wins
        assert stage_root(prefix, 65534, 65534) == prefix
        (closed / "open").chmod(0o755)
        if os.geteuid() == 0:  # the owner of a 0700 directory goes through it
            os.chown(closed, 65534, 65534)
            root = stage_root(prefix, 65534, 65534)  # closed itself, or above it
            assert root is None or (str(closed) + "/").startswith(root + "/")
        assert stage_root("/usr/lib", 65534, 65534) is None  # reachable as it is
    finally:
        closed.chmod(0o755)


def test_stage_root_of_pyenv_interpreters_when_root(py312):
    if os.geteuid() != 0 or os.stat("/root").st_mode & 0o001:
        pytest.skip("needs a root worker and a closed /root")
    if not py312.prefix.startswith("/root/"):
        pytest.skip("the interpreter is not under /root")
    assert stage_root(py312.prefix, 65534, 65534) == "/root/" + py312.prefix.split("/")[2]


def test_the_script_runs_as_main_with_its_own_traceback(backend, py312):
    script = (
        "import sys\n"
        "print(__name__, __file__, sys.argv)\n"
        "print(sorted(k for k in globals() if not k.startswith('__')))\n"
        "def boom():\n"
        "    raise ValueError('bad')\n"
        "boom()\n"
    )
    result = run(backend, py312, script)
    # Only the script's own names: nothing the prelude used is left behind.
    assert result.output == "__main__ /scripts/script.py ['/scripts/script.py']\n['sys']\n"
    assert (result.status, result.exit_code, result.error_type) == ("completed", 1, "script_error")
    assert result.errors.startswith(
        'Traceback (most recent call last):\n  File "/scripts/script.py", line 6, in <module>\n'
    ), result.errors
    assert "<string>" not in result.errors
    assert result.errors.rstrip().endswith("ValueError: bad")


# --- no overcommit ---------------------------------------------------------------------------


def test_host_slots_are_shared_by_every_holder_on_the_host(tmp_path):
    from executions.sandbox.local.slots import SlotPool

    one, other = SlotPool(2, str(tmp_path)), SlotPool(2, str(tmp_path))  # two workers
    first, second = one.reserve(), other.reserve()
    assert first is not None and second is not None and first.name != second.name
    assert one.reserve() is None and other.reserve() is None
    first.release()
    again = other.reserve()
    assert again is not None and again.name == first.name
    # A worker that dies gives its slots back: the kernel drops its locks.
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import sys, time; sys.path.insert(0, '.')\n"
            "from executions.sandbox.local.slots import SlotPool\n"
            f"lease = SlotPool(1, {str(tmp_path / 'solo')!r}).reserve()\n"
            "print('held' if lease else 'none', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        assert SlotPool(1, str(tmp_path / "solo")).reserve() is None
    finally:
        holder.kill()
        holder.wait()
    assert SlotPool(1, str(tmp_path / "solo")).reserve() is not None


def test_the_default_is_one_slot_per_cpu_the_worker_may_use():
    from executions.sandbox.local.slots import default_slots

    assert default_slots() == len(os.sched_getaffinity(0))


def test_runs_weigh_less_than_the_web_server_and_the_database(backend):
    """Under load the site keeps answering: this installation's runs together get 1/8 of the
    default CPU weight."""
    if backend.hierarchy is None or "cpu" not in backend.hierarchy.bases:
        pytest.skip("no writable cpu controller")
    base = backend.hierarchy.bases["cpu"]
    name = "cpu.shares" if backend.mode == "v1" else "cpu.weight"
    with open(f"{base}/{name}") as f:
        assert int(f.read()) < (1024 if backend.mode == "v1" else 100) // 4


# --- live output and input ------------------------------------------------------------------


class Recorder:
    """Events that keep what they heard, with when, and send input on cue."""

    def __init__(self, inputs=()):
        self.heard: list[tuple[float, str, str]] = []
        self.inputs = list(inputs)  # (after this text was printed, send these bytes)
        self.waiting: list[bool] = []  # what it was told of the script's waiting for input

    def output(self, stream, text):
        self.heard.append((time.monotonic(), stream, text))

    def waiting_for_input(self, waiting):
        self.waiting.append(waiting)

    def poll(self):
        printed = "".join(text for _, _, text in self.heard)
        if self.inputs and self.inputs[0][0] in printed:
            return self.inputs.pop(0)[1]
        return None


def run_with(backend, runtime, script, events, interactive=False, **limits):
    spec = RunSpec(
        script, runtime, replace(LIMITS, **limits), run_id=uuid.uuid4().hex,
        interactive=interactive,
    )  # fmt: skip
    return backend.run(spec, threading.Event(), events)


def test_output_is_heard_as_it_is_printed_in_order(backend, py312):
    events = Recorder()
    started = time.monotonic()
    script = (
        "import sys, time\n"
        "for i in range(3):\n"
        "    print('out', i, flush=True)\n"
        "    print('err', i, file=sys.stderr, flush=True)\n"
        "    time.sleep(0.3)\n"
    )
    result = run_with(backend, py312, script, events)
    assert result.status == "completed", result
    heard: list[tuple[str, str]] = []
    for _, stream, text in events.heard:  # unbuffered print writes its pieces one by one
        if heard and heard[-1][0] == stream:
            heard[-1] = (stream, heard[-1][1] + text)
        else:
            heard.append((stream, text))
    assert heard == [
        (stream, f"{name} {i}\n") for i in range(3) for stream, name in
        (("stdout", "out"), ("stderr", "err"))
    ]  # fmt: skip
    first_at = events.heard[0][0] - started
    assert first_at < result.wall_time_ms / 1000 - 0.4  # heard while it still ran
    assert "".join(t for _, s, t in events.heard if s == "stdout") == result.output


def test_output_heard_stops_at_the_cap_as_stored(backend, py312):
    events = Recorder()
    result = run_with(backend, py312, "print('x' * 5000)", events, output_bytes=1024)
    assert result.error_type == "output_limit"
    assert sum(len(t.encode()) for _, _, t in events.heard) <= 1024


def test_interactive_input_reaches_the_script_while_it_runs(backend, py312):
    events = Recorder(inputs=[("name? ", b"Ada\n"), ("again? ", b"")])
    script = (
        "name = input('name? ')\nprint('hello', name)\n"
        "try:\n    input('again? ')\nexcept EOFError:\n    print('no more input')\n"
    )
    result = run_with(backend, py312, script, events, interactive=True)
    assert (result.status, result.exit_code) == ("completed", 0), result
    assert result.output == "name? hello Ada\nagain? no more input\n"


def test_a_script_waiting_for_input_nobody_sends_says_so(backend, py312):
    waits = Recorder()
    result = run_with(
        backend, py312, "print('ready', flush=True)\ninput()", waits, interactive=True,
        wall_time_s=1,
    )  # fmt: skip
    assert (result.status, result.error_type) == ("timeout", "timeout")
    assert "waiting for input" in result.reason, result.reason
    if backend.hierarchy is not None:  # its processes are known: it was told as it waited
        assert waits.waiting == [True]
    busy_events = Recorder()
    busy = run_with(
        backend, py312, "while True: pass", busy_events, interactive=True, wall_time_s=1
    )
    assert "waiting for input" not in busy.reason and busy.status == "timeout"
    if backend.hierarchy is not None:
        assert busy_events.waiting == []  # busy, never reading


def test_waiting_for_input_is_told_as_it_starts_and_stops(backend, py312):
    if backend.hierarchy is None:
        pytest.skip("without cgroups the run's processes are not listed: the line stays open")

    class Answerer(Recorder):
        def poll(self):  # answers once told that the script waits, as a person would
            return b"Ada\n" if self.waiting == [True] else None

    events = Answerer()
    script = "import time\ntime.sleep(0.5)\nname = input('? ')\ntime.sleep(0.5)\nprint(name)"
    result = run_with(backend, py312, script, events, interactive=True, wall_time_s=10)
    assert (result.status, result.output) == ("completed", "? Ada\n")
    assert events.waiting == [True, False]


@pytest.mark.slow
def test_time_spent_waiting_for_a_busy_host_s_cpu_is_not_the_script_s(backend, py312):
    """Runs weigh less than the host's own work: on a busy host a script that needs 0.5 s of
    CPU may get it only over a few seconds. Its wall clock is stretched by that wait (bounded),
    so it is not reported as having run too long."""
    if backend.hierarchy is None or "cpu" not in backend.hierarchy.bases:
        pytest.skip("no writable cpu controller: no weights")
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(len(os.sched_getaffinity(0)))
    ]
    try:
        time.sleep(0.2)
        script = "import time\nwhile time.process_time() < 0.5:\n    pass\nprint('done')"
        result = run(backend, py312, script, wall_time_s=2)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert (result.status, result.output) == ("completed", "done\n"), result
    assert result.extra["cpu_wait_ms"] > 0, result


def test_a_script_that_ends_at_once_keeps_its_files_however_slow_the_supervisor(
    backend, py312, monkeypatch
):
    """The files a run leaves in /tmp/outputs are read through a handle on its /tmp, taken
    when the sandbox says it has its script. A script that ended in a millisecond took its
    /tmp with it before a busy worker took that handle (now and then in CI: no files). The
    script now waits for the supervisor's go; a slow supervisor is simulated here."""
    # The module (the package exports the function of the same name).
    supervise = sys.modules["executions.sandbox.local.supervise"]
    take = supervise._tmp_of

    def slow(*args, **kwargs):
        time.sleep(0.2)  # a busy worker: the script would have ended meanwhile
        return take(*args, **kwargs)

    monkeypatch.setattr(supervise, "_tmp_of", slow)
    script = "open('/tmp/outputs/quick.txt', 'w').write('kept')"
    result = run(backend, py312, script)
    assert result.status == "completed", result.errors
    assert result.files == [("quick.txt", b"kept")]

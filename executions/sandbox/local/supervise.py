"""Supervision of one local run: feed its stdin, read its output, hold it to the wall clock,
the CPU limit and the output cap, stop it on cancel, and report Facts.

One loop waits on stdout, stderr, stdin, the start pipe, the process (pidfd), the wall clock
and the cancel event. Killing bubblewrap's monitor kills its pid-1 (--die-with-parent), which
takes the whole pid namespace with it; the cgroup is emptied too.
"""

import codecs
import contextlib
import os
import re
import selectors
import signal
import stat
import threading
import time
from typing import IO

from executions.sandbox.contract import Events, Facts, NoEvents, RunSpec
from executions.sandbox.local.cgroup import RunCgroup, cpu_cores
from executions.sandbox.local.command import READY
from executions.sandbox.local.launcher import Launcher

KILL_GRACE_S = 1.0  # after a kill, how long to keep reading what was already printed
READ_CHUNK = 65536
# Past this many reads of a run's output in a tick, each next read waits GATHER_S first, and the
# output gathers in the pipe (64 KiB) meanwhile. A script that wrote its output one byte a write
# woke this loop for each: the worker spent as much CPU reading as the script did writing, at
# the worker's own CPU weight, not the runs' (1/8 of it). 20 full reads are more than the
# output cap, and 64 KiB every 5 ms is more than 12 MB/s: output written in bulk never waits.
READS_PER_TICK = 20
GATHER_S = 0.005
TICK_S = 0.1  # how often the CPU used is looked at: the most a run can overrun its CPU limit
START_TIMEOUT_S = 10.0  # from launch to the script's start; beyond it the platform has failed
# A busy host can keep a run from a core it was due (the web server and the database come
# first: cgroup.RUNS_CPU_SHARES). That waiting is the platform's, not the script's: its wall
# clock is stretched by it, up to this many times the wall limit more. At 2, one run in a
# hundred needing 0.9 s of CPU still timed out with 200 simulated users on two cores (Locust
# on the same machine): it got less than that in 15 s.
MAX_STRETCH = 4.0


class CpuWait:
    """How long the run was kept from a CPU it was due: each tick, when its processes were
    ready to run (state R) but got less CPU than they could have used (one core each, up to its
    CPU quota), the difference counts. Processes of the run competing among themselves use its
    quota in full, so a script cannot make this grow; only other work on the host can."""

    def __init__(self, cores: float):
        self.cores = cores  # its CPU quota, in cores
        self.last: tuple[float, int] | None = None
        self.waited_s = 0.0

    def tick(self, group: RunCgroup, used_ms: int | None = None) -> float:
        """Count the tick since the last; used_ms: the run's CPU now, if already read."""
        now = time.monotonic()
        used_ms = (group.cpu_ms() or 0) if used_ms is None else used_ms
        if self.last is not None:
            runnable = min(_runnable(group.pids()), self.cores)
            elapsed = now - self.last[0]
            if runnable > 0 and elapsed > 0:
                used = (used_ms - self.last[1]) / 1000
                self.waited_s += max(0.0, runnable * elapsed - used) / runnable
        self.last = (now, used_ms)
        return self.waited_s


def _stat_fields(stat: bytes) -> list[bytes]:
    """/proc/<pid>/stat's fields after the command name (which may hold spaces and ")"):
    state, ppid, ... (field 3 of proc(5) is index 0)."""
    return stat[stat.rindex(b")") + 2 :].split()


def _runnable(pids: list[int]) -> int:
    count = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        if _stat_fields(stat)[0] == b"R":
            count += 1
    return count


class Output:
    """stdout and stderr, capped together on the size of the text that will be stored (an
    invalid byte is stored as U+FFFD, three bytes; NUL as U+2400, three bytes)."""

    def __init__(self, cap: int):
        self.cap = cap
        self.stored = 0
        self.chunks: dict[str, list[bytes]] = {"out": [], "err": []}
        self.cut = {"out": False, "err": False}
        self._decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in self.chunks}

    def add(self, stream: str, data: bytes) -> tuple[bool, str]:
        """Keep data; (False, "") once the cap is passed (what is stored is cut to it later),
        else (True, its text as it will be stored)."""
        text = self._decoders[stream].decode(data)
        self.stored += len(text.encode()) + 2 * text.count("\x00")
        self.chunks[stream].append(data)
        if self.stored > self.cap:
            self.cut[stream] = True
            return False, ""
        return True, text.replace("\x00", "\u2400")

    def data(self, stream: str) -> bytes:
        return b"".join(self.chunks[stream])


class Stdin:
    """The script's stdin: what was given before the run, then (interactive runs) what is
    sent while it goes, until the end of input. Written without blocking, as the pipe takes it."""

    def __init__(self, pipe: IO[bytes], sel: selectors.BaseSelector, data: bytes, more: bool):
        self.pipe, self.sel = pipe, sel
        self.pending = bytearray(data)
        self.eof = not more  # nothing comes after pending
        self.registered = self.closed = False
        os.set_blocking(pipe.fileno(), False)
        self._sync()

    def add(self, data: bytes) -> None:
        """More input (b"": the end of it)."""
        if self.closed:
            return
        if data:
            self.pending += data
        else:
            self.eof = True
        self._sync()

    def write(self) -> None:
        try:
            del self.pending[: os.write(self.pipe.fileno(), self.pending)]
        except BlockingIOError:
            return
        except OSError:  # the script exited or closed its stdin: the rest is not wanted
            self.pending.clear()
            self.eof = True
        self._sync()

    @property
    def waiting(self) -> bool:
        """Open with nothing left to write: a script reading now waits for input."""
        return not self.closed and not self.pending

    def _sync(self) -> None:
        if self.closed:
            return
        if self.eof and not self.pending:
            if self.registered:
                self.sel.unregister(self.pipe)
            self.pipe.close()
            self.registered, self.closed = False, True
        elif self.pending and not self.registered:
            self.sel.register(self.pipe, selectors.EVENT_WRITE, "in")
            self.registered = True
        elif not self.pending and self.registered:
            self.sel.unregister(self.pipe)
            self.registered = False


READ_SYSCALL = {"x86_64": 0, "aarch64": 63}.get(os.uname().machine)


def _reading_stdin(pids: list[int]) -> bool:
    """Whether a process of the run is blocked in read(0, ...) (/proc/<pid>/syscall)."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/syscall") as f:
                fields = f.read().split()
        except OSError:
            continue
        if len(fields) > 1 and fields[0] == str(READ_SYSCALL) and int(fields[1], 16) == 0:
            return True
    return False


def _children(pid: int) -> list[int]:
    """The child processes of pid (without cgroups: bubblewrap's monitor's is the sandbox)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return []


# A tmpfs's size counts its blocks, not its inodes: an empty file costs it nothing and the
# kernel ~1.3 KiB (inode and dentry). With a cgroup that memory is charged to the run; without,
# nothing counted it (347,000 files in /tmp held 461 MiB beside a 64 MiB limit), and
# bubblewrap cannot give a tmpfs an nr_inodes. So the rlimits fallback counts the inodes of
# the sandbox's writable mounts each tick and stops the run, at its memory limit, once they
# would hold half of it.
WRITABLE_MOUNTS = ("tmp", "dev/shm", "scripts")  # in the sandbox's root
INODE_BYTES = 1024


def _writable_mounts(pids: list[int]) -> list[int]:
    """Handles on the sandbox's writable tmpfs mounts, through the first of pids that has them."""
    for pid in pids:
        try:
            root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue
        fds = []
        try:
            for path in WRITABLE_MOUNTS:
                with contextlib.suppress(OSError):
                    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                    fds.append(os.open(path, flags, dir_fd=root))
        finally:
            os.close(root)
        if fds:
            return fds
    return []


def _inodes(fds: list[int]) -> int:
    used = 0
    for fd in fds:
        with contextlib.suppress(OSError):
            st = os.fstatvfs(fd)
            used += st.f_files - st.f_ffree
    return used


def _tmp_of(pids: list[int], skip: int) -> int | None:
    """A handle on a running sandbox's /tmp (its size is looked at when the run ends)."""
    for pid in pids:
        if pid == skip:
            continue
        with contextlib.suppress(OSError):
            return os.open(
                f"/proc/{pid}/root/tmp", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            )
    return None


OUTPUTS = "outputs"  # /tmp/outputs in the sandbox
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# How many files past the count cap are looked at for one that fits, at most: a script that left
# 80,000 files there made the worker open each (0.8 s of its time after a 2 s run).
LOOK_PAST_CAP = 100


def collect_outputs(
    tmp_fd: int | None, count: int, size: int
) -> tuple[list[tuple[str, bytes]], bool]:
    """The regular files the script left in /tmp/outputs, read through the handle on its /tmp
    (the tmpfs lives while the handle is open): (name, contents) by name, at most count files
    and size bytes together, and whether there was more. Nothing is followed or opened that is
    not a plain file the script made: links, FIFOs, devices, directories and odd names are
    passed over; a sparse file is judged by its size, not read past the cap."""
    if tmp_fd is None or count <= 0:
        return [], False
    try:
        outputs = os.open(OUTPUTS, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=tmp_fd)
    except OSError:
        return [], False
    files: list[tuple[str, bytes]] = []
    left, capped = size, False
    try:
        # The directory's own types (no call per entry): only plain files are candidates.
        with os.scandir(outputs) as entries:
            names = sorted(
                e.name
                for e in entries
                if SAFE_NAME.fullmatch(e.name) and e.is_file(follow_symlinks=False)
            )
        if len(names) > count + LOOK_PAST_CAP:
            names, capped = names[: count + LOOK_PAST_CAP], True
        for name in names:
            if len(files) >= count:
                capped = True
                break
            try:
                fd = os.open(
                    name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=outputs
                )
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    continue
                if st.st_size > left:
                    capped = True
                    continue
                data = os.read(fd, left + 1)
                if len(data) > left:
                    capped = True
                    continue
                files.append((name, data))
                left -= len(data)
            finally:
                os.close(fd)
    finally:
        os.close(outputs)
    return files, capped


def _full(tmp_fd: int | None) -> bool:
    if tmp_fd is None:
        return False
    try:
        st = os.fstatvfs(tmp_fd)
    except OSError:
        return False
    return st.f_bavail == 0


class TreeCpu:
    """The CPU time of a process tree, from /proc: how the rlimits fallback (no cgroup to ask)
    holds a run of many processes to one CPU limit. Processes that ended and were reaped count
    through their parent's; the total never goes down."""

    TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")

    def __init__(self, root: int):
        self.root = root
        self.total_ms = 0

    def ms(self) -> int:
        children: dict[int, list[int]] = {}
        ticks: dict[int, int] = {}
        with os.scandir("/proc") as entries:
            for entry in entries:
                if not entry.name.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry.name}/stat", "rb") as f:
                        stat = f.read()
                except OSError:
                    continue
                fields = _stat_fields(stat)
                pid = int(entry.name)
                children.setdefault(int(fields[1]), []).append(pid)
                ticks[pid] = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
        used, todo = 0, [self.root]
        while todo:
            pid = todo.pop()
            used += ticks.get(pid, 0)
            todo += children.get(pid, [])
        self.total_ms = max(self.total_ms, int(used * self.TICK_MS))
        return self.total_ms


def _stretched(started: float, wall_s: float, wait: CpuWait, group: RunCgroup) -> float:
    """The wall-clock deadline, moved by the time the run waited for a CPU (bounded)."""
    return started + wall_s + min(wait.tick(group), wall_s * MAX_STRETCH)


def _kill(launcher: Launcher, pidfd: int | None) -> None:
    with contextlib.suppress(ProcessLookupError, OSError):
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        else:
            launcher.proc.kill()
    if launcher.group is not None:
        launcher.group.kill()


def supervise(
    spec: RunSpec,
    launcher: Launcher,
    feed: bytes,
    started: float,
    cancel: threading.Event,
    events: Events | None = None,
) -> Facts:
    """Run the launcher's sandbox to its end (its script already delivered) and say what
    happened; events hears the output as it is printed and is asked for input."""
    events = events or NoEvents()
    limits = spec.limits
    proc, group = launcher.proc, launcher.group
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    output = Output(limits.output_bytes)
    facts = Facts()
    cpu_limit_ms = limits.cpu_time_s * 1000
    cpu_used = group.cpu_ms if group is not None else TreeCpu(proc.pid).ms
    pidfd = tmp_fd = None
    mounts: list[int] = []  # without cgroups: the sandbox's tmpfs mounts, for their inodes
    inode_cap = limits.memory_bytes // 2 // INODE_BYTES
    sel = selectors.DefaultSelector()
    try:
        with contextlib.suppress(OSError):
            pidfd = os.pidfd_open(proc.pid)
            sel.register(pidfd, selectors.EVENT_READ, "exit")
        for stream, pipe in (("out", proc.stdout), ("err", proc.stderr)):
            os.set_blocking(pipe.fileno(), False)
            sel.register(pipe, selectors.EVENT_READ, stream)
        sel.register(launcher.start_r, selectors.EVENT_READ, "start")
        stdin = Stdin(proc.stdin, sel, feed, more=spec.interactive)
        open_pipes = 2
        exited = False
        reaped = None
        # The wall clock runs from the script's start (the prelude's signal), not from the
        # launch: time the platform takes to start a sandbox is not the script's.
        deadline = started + START_TIMEOUT_S
        script_started = None
        cpu_wait = CpuWait(cpu_cores(limits.cpu_limit))
        drain_until = None
        next_tick, used_ms = 0.0, 0  # the CPU and input are looked at once a tick, not each read
        reads = 0  # reads of its output this tick
        told_reading = False  # what events was last told of its waiting for input
        while open_pipes or not exited:
            now = time.monotonic()
            if drain_until is not None:
                if now >= drain_until:
                    break
                wait = drain_until - now
            else:
                ticked = now >= next_tick
                if ticked:
                    next_tick = now + TICK_S
                    reads = 0
                    used_ms = cpu_used() or 0
                    if script_started is not None and group is not None:
                        cpu_wait.tick(group, used_ms)
                if cancel.is_set():
                    facts.cancelled = True
                elif now >= deadline and script_started is None:
                    facts.platform_error = (
                        f"The sandbox did not start the script within {START_TIMEOUT_S:g} s."
                    )
                elif (
                    now >= deadline
                    and script_started is not None
                    and group is not None
                    and (
                        stretched := _stretched(script_started, limits.wall_time_s, cpu_wait, group)
                    )
                    > now
                ):
                    deadline = stretched  # it waited for a CPU: that time is not its own
                elif now >= deadline:
                    facts.wall_timeout = True
                    facts.waiting_for_input = (
                        stdin.waiting and group is not None and _reading_stdin(group.pids())
                    )
                elif ticked and used_ms >= cpu_limit_ms:
                    facts.cpu_exceeded = True
                elif ticked and mounts and _inodes(mounts) > inode_cap:
                    facts.oom_kills = 1  # its files' inodes: kernel memory no rlimit counts
                if (
                    facts.cancelled
                    or facts.wall_timeout
                    or facts.cpu_exceeded
                    or facts.platform_error
                    or facts.oom_kills
                ):
                    _kill(launcher, pidfd)
                    drain_until = now + KILL_GRACE_S
                    continue
                wait = min(next_tick, deadline) - now
                sent = events.poll() if ticked else None
                if sent is not None:
                    stdin.add(sent)
                if ticked and spec.interactive and script_started is not None:
                    # Without cgroups its processes are not listed: the line stays open.
                    reading = stdin.waiting and (group is None or _reading_stdin(group.pids()))
                    if reading != told_reading:
                        told_reading = reading
                        events.waiting_for_input(reading)
                if reads >= READS_PER_TICK:
                    # Output in many small writes: let it gather in the pipe a moment.
                    time.sleep(min(GATHER_S, max(wait, 0)))
            if pidfd is None and not exited:  # no pidfd (old kernel): look each pass
                pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    reaped, exited = (status, rusage), True
            for key, _ in sel.select(wait):
                if key.data == "exit":
                    exited = True
                    sel.unregister(key.fileobj)
                elif key.data == "start":
                    facts.started = facts.started or os.read(launcher.start_r, 1) == b"S"
                    sel.unregister(key.fileobj)
                    if facts.started:
                        script_started = time.monotonic()
                        deadline = script_started + limits.wall_time_s
                        if group is not None:
                            cpu_wait.tick(group)  # counts from here
                            tmp_fd = _tmp_of(group.pids(), skip=proc.pid)
                        else:
                            sandbox = _children(proc.pid)
                            tmp_fd = _tmp_of(sandbox, skip=proc.pid)
                            mounts = _writable_mounts(sandbox)
                        launcher.go()  # its /tmp is held: the script may run (and end) now
                elif key.data == "in":
                    stdin.write()
                else:
                    reads += 1
                    try:
                        data = os.read(key.fd, READ_CHUNK)
                    except BlockingIOError:
                        continue
                    if not data:
                        sel.unregister(key.fileobj)
                        open_pipes -= 1
                        continue
                    if key.data == "out" and not launcher.ready:
                        launcher.ready = data.startswith(READY)
                        data = data[len(READY) :] if launcher.ready else data
                        if not data:
                            continue
                    kept, text = output.add(key.data, data)
                    if text:
                        events.output("stdout" if key.data == "out" else "stderr", text)
                    if not kept and not facts.output_capped:
                        facts.output_capped = True
                        _kill(launcher, pidfd)
                        drain_until = time.monotonic()  # nothing more is kept
        if not facts.started:  # a fast script: its start byte may still be in the pipe
            with contextlib.suppress(OSError):
                os.set_blocking(launcher.start_r, False)
                facts.started = os.read(launcher.start_r, 1) == b"S"
        if not exited or drain_until is not None:
            _kill(launcher, pidfd)
        if reaped is None:
            _, status, rusage = os.wait4(proc.pid, 0)
        else:
            status, rusage = reaped
        proc.returncode = os.waitstatus_to_exitcode(status)
        facts.wall_time_ms = int((time.monotonic() - (script_started or started)) * 1000)
        if script_started is not None:
            # From the worker's ask to the script's start (a spare's hand-over, or a new
            # sandbox's launch): integr8s_sandbox_start_seconds, as a pod's start on Kubernetes.
            facts.extra["start_seconds"] = round(script_started - started, 4)
        facts.extra["cpu_wait_ms"] = int(cpu_wait.waited_s * 1000)
        facts.tmp_full = _full(tmp_fd)
        facts.files, facts.files_capped = collect_outputs(
            tmp_fd, limits.output_files, limits.files_bytes
        )
    finally:
        sel.close()
        for fd in (pidfd, tmp_fd, *mounts):
            if fd is not None:
                os.close(fd)
    code = proc.returncode
    facts.exit_code = code if code >= 0 else 128 - code
    if group is not None:
        group.kill()  # anything left (nothing should be): gone before we measure
        facts.cpu_time_ms, facts.peak_memory_kb, oom = group.usage()
        facts.oom_kills = int(oom)
        facts.process_limit_hit = group.process_limit_hits() > 0
    else:
        rusage_ms = int((rusage.ru_utime + rusage.ru_stime) * 1000)
        facts.cpu_time_ms = max(rusage_ms, cpu_used() or 0)
        facts.peak_memory_kb = rusage.ru_maxrss
    facts.cpu_exceeded = facts.cpu_exceeded or (facts.cpu_time_ms or 0) >= cpu_limit_ms
    facts.stdout, facts.stderr = output.data("out"), output.data("err")
    facts.stdout_cut, facts.stderr_cut = output.cut["out"], output.cut["err"]
    if not facts.started and not (facts.cancelled or facts.platform_error):
        # Nothing of the script ran: what is on stderr is the launcher's, nsenter's or
        # bubblewrap's own complaint.
        why = facts.stderr.decode("utf-8", "replace").strip() or f"exit code {facts.exit_code}"
        why = why.removeprefix("sandbox: ").removeprefix("bwrap: ")
        facts.platform_error = f"The sandbox could not start: {why}"
    return facts

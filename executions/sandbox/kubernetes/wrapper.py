"""The in-pod wrapper: PID 1 of every execution pod (kubernetes backend).

Runs the user's script in a child process and reports what happened as envelope lines on its
own stdout (the container log), each ``<nonce>:<kind>:<base64>``:

- ``O`` / ``E``: a chunk of the script's stdout / stderr, written while the script runs so that
  what it printed survives even if the whole container is killed (memory limit);
- ``F``: a piece of an output file the script left in /tmp/outputs (``name NUL bytes``), sent
  after every process of the script is gone, within the output files limits;
- ``R``: the result (JSON), written last, after every process of the script is gone.

The script cannot forge an envelope that counts: its stdout and stderr are pipes this wrapper
owns, the nonce is removed from the environment before the script starts, the wrapper makes
itself non-dumpable (so /proc/1/fd, /proc/1/environ and /proc/1/mem are closed to the script,
which runs as the same uid), it kills every leftover process before writing ``R``, and the
backend believes only the last ``R`` line and only when this wrapper exited 0. Non-dumpable
takes ctypes (prctl): where it cannot be had, the script is not run at all and the result says
"unsafe_image".

Every limit the result names is one this wrapper measured and enforced in its one loop: the
wall clock, the output, and the CPU time of all the script's processes together (a run's, not
a process's). The process limit is the kernel's (RLIMIT_NPROC); its per-process CPU rlimit,
set a second above the run's, is a backstop only.

Standard library only, and valid on Python 3.8 to 3.13: it runs under the image's interpreter.
ctypes is required; json and resource may be missing from a trimmed interpreter (then the
limits are set by util-linux's prlimit and peak memory is sampled from /proc). Settings come
from the environment: INTEGR8S_NONCE, and INTEGR8S_LIMITS as "name=value,name=value".
"""

import base64
import errno
import os
import select
import signal
import stat
import sys
import time

try:
    import resource
except ImportError:  # a trimmed interpreter
    resource = None  # type: ignore[assignment]  # the module may be absent: None says so

CODE_DIR = "/integr8s"
OUTPUTS = "/tmp/outputs"  # what the script leaves here is sent back with the result
FILE_CHUNK = 8192  # output file bytes per envelope line (a log line stays short)
FLUSH_BYTES = 4096  # an envelope line per this much output, or per FLUSH_S of quiet
FLUSH_S = 0.02
CPU_TICK_S = 0.1  # how often the CPU used is looked at: the most a run can overrun its limit
CPU_BACKSTOP_S = 1  # the kernel's per-process CPU rlimit, this far above the run's limit
PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4
CLK_TCK = os.sysconf("SC_CLK_TCK")


def make_undumpable():
    """Close /proc/<wrapper>/{fd,environ,mem} to processes of the same uid (the script).

    Returns "" once the kernel says this process is not dumpable, else why it is not
    ("no_ctypes", "prctl_failed"): then the script could read the nonce and write into the log
    as this wrapper, and must not run.
    """
    try:
        import ctypes
    except ImportError:  # Debian's python3-minimal, a Python built without libffi
        return "no_ctypes"
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        zero = ctypes.c_ulong(0)
        libc.prctl(PR_SET_DUMPABLE, zero, zero, zero, zero)
        if libc.prctl(PR_GET_DUMPABLE, zero, zero, zero, zero) == 0:
            return ""
    except (OSError, AttributeError):  # no C library to load, or no prctl in it
        pass
    return "prctl_failed"


def alone_in_cgroup(directory):
    """Whether the cgroup mounted at directory holds this process and nothing else: the
    container's own cgroup, seen before the script starts (never a host's or a shared one)."""
    try:
        with open(directory + "/cgroup.procs") as f:
            return f.read().split() == [str(os.getpid())]
    except OSError:
        return False


def read_counter(path, key=None):
    """An integer from a cgroup file: the whole file, or the value of key in a "key value" file."""
    with open(path) as f:
        if key is None:
            return int(f.read())
        for line in f:
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    raise ValueError(f"no {key} in {path}")


# The container's cgroup counters: (directory, file, key in the file or None, unit in seconds or
# kilobytes). A private cgroup namespace shows cgroup v2 at /sys/fs/cgroup; v1 mounts each
# controller's directory ("cpuacct" is also there when it is mounted as "cpu,cpuacct").
CGROUP_CPU = (
    ("/sys/fs/cgroup", "cpu.stat", "usage_usec", 1e-6),
    ("/sys/fs/cgroup/cpuacct", "cpuacct.usage", None, 1e-9),
)
CGROUP_MEMORY_PEAK = (
    ("/sys/fs/cgroup", "memory.peak", None, 1 / 1024),  # kernel 5.19 and later
    ("/sys/fs/cgroup/memory", "memory.max_usage_in_bytes", None, 1 / 1024),
)


def own_cgroup_counter(candidates):
    """(path, key, unit) of the first counter that can be read in a cgroup holding this
    process alone, or None: a cgroup shared with others (a host's) would count them too."""
    for directory, name, key, unit in candidates:
        if not alone_in_cgroup(directory):
            continue
        path = directory + "/" + name
        try:
            read_counter(path, key)
        except (OSError, ValueError):
            continue
        return path, key, unit
    return None


def read_cgroup(counter):
    path, key, unit = counter
    return read_counter(path, key) * unit


def proc_times(pid):
    """(parent pid, CPU ticks the process used, CPU ticks of its children it waited for)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def live_descendants_cpu():
    """CPU seconds used so far by every live descendant of this process (and by the children
    each of them waited for), from /proc."""
    me = os.getpid()
    children: dict = {}  # parent pid: its children
    used: dict = {}  # pid: CPU ticks
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid, own, waited = proc_times(int(name))
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
        children.setdefault(ppid, []).append(int(name))
        used[int(name)] = own + waited
    total, seen, todo = 0, set(), list(children.get(me, ()))
    while todo:
        pid = todo.pop()
        if pid in seen or pid == me:  # a pid reused during the scan
            continue
        seen.add(pid)
        total += used.get(pid, 0)
        todo.extend(children.get(pid, ()))
    return total / CLK_TCK


class Cpu:
    """CPU time used so far by the script's processes, all of them together.

    In a pod: the container cgroup's count (the kernel's, which no process leaves) less this
    wrapper's own. Where the cgroup is not the wrapper's alone (a test on a host): what the
    wrapper's ended children used plus what its live descendants have used, from /proc, which
    misses a process nobody waited for (its parent ignored SIGCHLD) and so does not hold a run
    that hides its work that way; the per-process rlimit and the wall clock still do.
    """

    def __init__(self):
        self.cgroup = own_cgroup_counter(CGROUP_CPU)  # looked for before the script starts
        self.base = read_cgroup(self.cgroup) - self.own() if self.cgroup else 0.0
        self.seen = 0.0  # the most reached() found

    @staticmethod
    def own():
        t = os.times()
        return t.user + t.system

    def seconds(self):
        if self.cgroup is not None:
            try:
                return max(0.0, read_cgroup(self.cgroup) - self.own() - self.base)
            except (OSError, ValueError):  # gone from under us: /proc from now on
                self.cgroup = None
        t = os.times()
        return t.children_user + t.children_system + live_descendants_cpu()

    def reached(self, limit):
        used = self.seconds()
        if used >= limit:
            # Asked again: a /proc scan counts a process twice if its parent reaps it
            # mid-scan; two scans in a row would need two such reaps.
            used = min(used, self.seconds())
        self.seen = max(self.seen, used)
        return used >= limit

    def total(self):
        """The run's whole use, once it has ended. Killed outside a PID namespace (never in a
        pod), its children are reaped by someone else, and only what was seen of them counts."""
        return max(self.seconds(), self.seen)


def oom_kills():
    """How many processes the kernel OOM killer has killed in this container's cgroup."""
    for path, key in (
        ("/sys/fs/cgroup/memory.events", "oom_kill"),  # cgroup v2, private cgroup namespace
        ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill"),  # cgroup v1
    ):
        try:
            with open(path) as f:
                for line in f:
                    name, _, value = line.partition(" ")
                    if name == key:
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


class Emitter:
    """Writes envelope lines to fd 1, coalescing small writes into fewer lines."""

    def __init__(self, nonce, cap):
        self.prefix = nonce.encode() + b":"
        self.cap = cap  # stdout + stderr together
        self.used = 0
        self.truncated = {"O": False, "E": False}
        self.pending = {"O": b"", "E": b""}
        self.last_flush = time.monotonic()

    def write_line(self, kind, payload):
        line = self.prefix + kind.encode() + b":" + base64.b64encode(payload) + b"\n"
        view = memoryview(line)
        while view:
            try:
                n = os.write(1, view)
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            view = view[n:]

    def add(self, kind, data):
        """Keep what fits under the cap; return False once the cap is exceeded."""
        room = self.cap - self.used
        if len(data) > room:
            data = data[: max(room, 0)]
            self.truncated[kind] = True
        self.used += len(data)
        self.pending[kind] += data
        if len(self.pending[kind]) >= FLUSH_BYTES:
            self.flush()
        return not self.truncated[kind]

    def flush(self, idle=False):
        if idle and time.monotonic() - self.last_flush < FLUSH_S:
            return
        for kind in ("O", "E"):
            if self.pending[kind]:
                self.write_line(kind, self.pending[kind])
                self.pending[kind] = b""
        self.last_flush = time.monotonic()


def parse_limits(text):
    limits = {}
    for item in (text or "").split(","):
        name, _, value = item.partition("=")
        if name.strip():
            limits[name.strip()] = float(value)
    return limits


def to_json(flat):
    """A flat dict of numbers, booleans, None and plain words as JSON (json may be missing)."""

    def value(v):
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        return '"' + "".join(c for c in str(v) if c.isalnum() or c in "_-. ") + '"'

    return "{" + ", ".join(f'"{k}": {value(v)}' for k, v in sorted(flat.items())) + "}"


def child_limits(limits):
    """(argv prefix, function run in the child before exec) that apply the rlimits.

    The CPU rlimit is per process and a backstop only, CPU_BACKSTOP_S above the run's limit:
    the run's limit is the wrapper's to enforce, on all the script's processes together.
    """
    cpu = max(1, int(limits.get("cpu_time_s", 5) + 0.999)) + CPU_BACKSTOP_S
    nproc = int(limits.get("processes", 64))
    if resource is None:
        for prlimit in ("/usr/bin/prlimit", "/bin/prlimit"):
            if os.path.exists(prlimit):
                argv = [prlimit, f"--cpu={cpu}:{cpu + 1}", f"--nproc={nproc}", "--core=1", "--"]
                return argv, lambda: None
        return [], lambda: None  # the wrapper's limits and the container's still hold

    settings = [
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),  # SIGXCPU, then SIGKILL a second later
        (resource.RLIMIT_NPROC, (nproc, nproc)),
        # 1 byte, not 0: a node whose core_pattern pipes to a helper (apport, systemd-coredump)
        # starts that helper as root for a crash under a limit of 0, and skips it only at 1.
        (resource.RLIMIT_CORE, (1, 1)),
    ]

    def apply():
        for which, value in settings:
            try:
                resource.setrlimit(which, value)
            except (ValueError, OSError):
                pass

    return [], apply


class Memory:
    """Peak memory of the run: the container cgroup's peak where the cgroup is the wrapper's
    alone (kernel buffers the script fills, pipes and sockets, count there as they count
    against the limit), and never less than the largest process's (what wait4 reports, or the
    VmHWM sampled from /proc without the resource module)."""

    def __init__(self):
        self.cgroup = own_cgroup_counter(CGROUP_MEMORY_PEAK)  # before the script starts
        self.maxrss_kb = 0

    def reap(self):
        """Collect one exited child without blocking; return (pid, status) or (0, None)."""
        try:
            if resource is None:
                return os.waitpid(-1, os.WNOHANG)
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return 0, None
        if pid:
            self.maxrss_kb = max(self.maxrss_kb, usage.ru_maxrss)  # kilobytes on Linux
        return pid, status

    def sample(self, pid):
        if resource is not None:
            return
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        self.maxrss_kb = max(self.maxrss_kb, int(line.split()[1]))
        except (OSError, ValueError, IndexError):
            pass

    def peak_kb(self):
        peak = self.maxrss_kb
        if self.cgroup is not None:
            try:
                peak = max(peak, int(read_cgroup(self.cgroup)))
            except (OSError, ValueError):
                pass
        return peak


def safe_name(name):
    """The local backend's rule for output file names: [A-Za-z0-9][A-Za-z0-9._-]{0,99}."""
    ok = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return 0 < len(name) <= 100 and name[0] in ok and all(c in ok or c in "._-" for c in name)


def send_outputs(emitter, directory, count, size):
    """Send the regular files the script left in directory as ``F`` lines (each
    ``name NUL chunk``; a file's lines in order, an empty file one line), at most count files
    and size bytes together, by name; return whether there were more. Called once every
    process of the script is gone. Links, FIFOs, devices, directories and odd names are passed
    over; a file is judged by its size before it is read, and read a chunk at a time."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    sent, left, capped = 0, size, False
    try:
        for name in sorted(os.listdir(dir_fd)):
            if not safe_name(name):
                continue
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    continue
                if sent >= count or st.st_size > left:
                    capped = True
                    continue
                head, todo = name.encode() + b"\0", st.st_size
                chunk = os.read(fd, min(FILE_CHUNK, todo)) if todo else b""
                emitter.write_line("F", head + chunk)  # an empty file is one line too
                todo -= len(chunk)
                while todo > 0:
                    chunk = os.read(fd, min(FILE_CHUNK, todo))
                    if not chunk:
                        break
                    emitter.write_line("F", head + chunk)
                    todo -= len(chunk)
                sent += 1
                left -= st.st_size - todo
            finally:
                os.close(fd)
    finally:
        os.close(dir_fd)
    return capped


def tmp_full():
    """Whether /tmp (the pod's size-limited emptyDir) has no room left."""
    try:
        return os.statvfs("/tmp").f_bavail == 0
    except OSError:
        return False


def spawn(argv, env, stdin_path, apply_limits):
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: becomes the script
        try:
            os.setsid()
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)  # first: a failure below is reported on the script's stderr
            fd = os.open(stdin_path, os.O_RDONLY) if os.path.exists(stdin_path) else None
            if fd is None:
                fd = os.open(os.devnull, os.O_RDONLY)
            os.dup2(fd, 0)
            os.closerange(3, 1024)
            try:
                os.chdir("/tmp")
            except OSError:
                pass
            apply_limits()
            os.execve(argv[0], argv, env)
        except BaseException as exc:  # noqa: BLE001 - report anything, then die
            try:
                os.write(2, f"integr8s: could not start the script: {exc}\n".encode())
            finally:
                os._exit(127)
    os.close(out_w)
    os.close(err_w)
    return pid, out_r, err_r


def kill_rest(pid):
    """Kill the script and everything it started."""
    if os.getpid() == 1:
        try:
            os.kill(-1, signal.SIGKILL)  # as PID 1: every other process in the container
        except OSError:
            pass
    for target in (-pid, pid):  # the script's session (and a wrapper outside a container)
        try:
            os.kill(target, signal.SIGKILL)
        except OSError:
            pass


def main():
    nonce = os.environ.pop("INTEGR8S_NONCE", "")
    limits = parse_limits(os.environ.pop("INTEGR8S_LIMITS", ""))
    code_dir = os.environ.pop("INTEGR8S_CODE_DIR", CODE_DIR)
    outputs = os.environ.pop("INTEGR8S_OUTPUTS", OUTPUTS)  # tests on a host use another
    emitter = Emitter(nonce, int(limits.get("output_bytes", 1 << 20)))
    unsafe = make_undumpable()
    if unsafe:
        # The script would be free to read the nonce and write into the log as this wrapper
        # (or past the output cap): it does not run.
        result = {"exit_code": None, "signal": None, "reason": "unsafe_image", "unsafe": unsafe}
        emitter.write_line("R", to_json(result).encode())
        return 0

    stop = {"signal": None}

    def on_term(signum, frame):
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    wall_limit = float(limits.get("wall_time_s", 5))
    cpu_limit = float(limits.get("cpu_time_s", 5))
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",  # output printed before a kill must not sit in a buffer
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        # BLAS and OpenMP start a thread per core, and fail pthread_create under the process
        # limit; matplotlib draws without a display, its cache in /tmp (as locally).
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        # Agg, and plt.show() saves PNGs into the outputs (integr8s_plots.py, beside the
        # script in the code volume), as in the local sandbox.
        "MPLBACKEND": "module://integr8s_plots",
        "INTEGR8S_OUTPUTS": outputs,
        "MPLCONFIGDIR": "/tmp",
    }
    try:
        os.mkdir(outputs)
    except OSError:
        pass
    prefix, apply_limits = child_limits(limits)
    argv = prefix + [sys.executable, "-u", os.path.join(code_dir, "script.py")]
    oom_before = oom_kills()
    memory = Memory()
    cpu = Cpu()
    started = time.monotonic()
    pid, out_r, err_r = spawn(argv, env, os.path.join(code_dir, "stdin"), apply_limits)

    fds = {out_r: "O", err_r: "E"}
    status = None
    reason = None  # why the wrapper stopped the script: wall_time, cpu_time, output_limit, ...
    deadline = started + wall_limit
    next_cpu_look = started
    while True:
        # PID 1 inherits orphans: reap them all, noting the script's own status.
        memory.sample(pid)
        while True:
            done, st = memory.reap()
            if not done:
                break
            if done == pid:
                status = st
        if status is not None:
            break
        now = time.monotonic()
        if reason is None:
            if now >= deadline:
                reason = "wall_time"
            elif stop["signal"] is not None:
                reason = "terminated"
            elif now >= next_cpu_look:
                next_cpu_look = now + CPU_TICK_S
                if cpu.reached(cpu_limit):
                    reason = "cpu_time"
            if reason:
                kill_rest(pid)
        try:
            ready, _, _ = select.select(list(fds), [], [], FLUSH_S)
        except InterruptedError:
            ready = []
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                del fds[fd]
                os.close(fd)
                continue
            if not emitter.add(fds[fd], data) and reason is None:
                reason = "output_limit"
                kill_rest(pid)
        emitter.flush(idle=True)
    wall_ms = int((time.monotonic() - started) * 1000)

    # The script has ended: nothing of it may outlive it or write after the result.
    kill_rest(pid)
    drain_until = time.monotonic() + 0.5
    while fds and time.monotonic() < drain_until:
        ready, _, _ = select.select(list(fds), [], [], 0.05)
        for fd in ready:
            data = os.read(fd, 65536)
            if not data:
                del fds[fd]
                os.close(fd)
                continue
            if not emitter.add(fds[fd], data) and reason is None:
                reason = "output_limit"  # what it printed last, read only after it exited
    for fd in fds:
        os.close(fd)
    while memory.reap()[0]:
        pass
    emitter.flush()
    files_capped = send_outputs(
        emitter,
        outputs,
        int(limits.get("output_files", 20)),
        int(limits.get("files_bytes", 8 << 20)),
    )

    cpu_s = cpu.total()
    exit_code = sig = None
    if os.WIFEXITED(status):
        exit_code = os.WEXITSTATUS(status)
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        exit_code = 128 + sig
    oom_after = oom_kills()
    oom = None if oom_after is None or oom_before is None else oom_after > oom_before
    # What the script died of is its own choice (it can kill itself with SIGXCPU or SIGKILL):
    # a limit is named only from what was measured.
    if reason is None and sig == signal.SIGKILL and oom:
        reason = "memory_limit"
    if reason is None and cpu_s >= cpu_limit:
        reason = "cpu_time"
    result = {
        "exit_code": exit_code,
        "signal": sig,
        "reason": reason,
        "oom_killed": oom,
        "tmp_full": tmp_full(),
        "files_capped": files_capped,
        "output_truncated": emitter.truncated["O"],
        "errors_truncated": emitter.truncated["E"],
        "wall_time_ms": wall_ms,
        "cpu_time_ms": int(cpu_s * 1000),
        "peak_memory_kb": memory.peak_kb(),
    }
    emitter.write_line("R", to_json(result).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())

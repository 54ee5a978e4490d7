"""The in-pod wrapper: PID 1 of every execution pod (kubernetes backend).

Runs the user's script in a child process and reports what happened as envelope lines on its
own stdout (the container log), each ``<nonce>:<kind>:<base64>``:

- ``O`` / ``E``: a chunk of the script's stdout / stderr, written while the script runs so that
  what it printed survives even if the whole container is killed (memory limit);
- ``R``: the result (JSON), written last, after every process of the script is gone.

The script cannot forge an envelope that counts: its stdout and stderr are pipes this wrapper
owns, the nonce is removed from the environment before the script starts, the wrapper makes
itself non-dumpable (so /proc/1/fd and /proc/1/environ are closed to the script) where ctypes
is available, it kills every leftover process before writing ``R``, and the backend believes
only the last ``R`` line and only when this wrapper exited 0.

Standard library only, and valid on Python 3.8 to 3.13: it runs under the image's interpreter,
which may be as bare as Debian's python3-minimal (no json, no resource module: then the limits
are set by util-linux's prlimit and usage is summed from os.wait4). Settings come from the
environment: INTEGR8S_NONCE, and INTEGR8S_LIMITS as "name=value,name=value".
"""

import base64
import errno
import os
import select
import signal
import sys
import time

try:
    import resource
except ImportError:  # python3-minimal
    resource = None  # type: ignore[assignment]  # the module may be absent: None says so

CODE_DIR = "/integr8s"
FLUSH_BYTES = 4096  # an envelope line per this much output, or per FLUSH_S of quiet
FLUSH_S = 0.02


def make_undumpable():
    """Close /proc/<wrapper>/{fd,environ,mem} to processes of the same uid (the script)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except Exception:  # ctypes is not in every minimal image; the other defences still hold
        pass


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
    """(argv prefix, function run in the child before exec) that apply the rlimits."""
    cpu = max(1, int(limits.get("cpu_time_s", 5) + 0.999))
    nproc = int(limits.get("processes", 64))
    if resource is None:
        for prlimit in ("/usr/bin/prlimit", "/bin/prlimit"):
            if os.path.exists(prlimit):
                argv = [prlimit, f"--cpu={cpu}:{cpu + 1}", f"--nproc={nproc}", "--core=0", "--"]
                return argv, lambda: None
        return [], lambda: None  # the wall limit and the container's limits still hold

    settings = [
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),  # SIGXCPU at the limit, SIGKILL a second later
        (resource.RLIMIT_NPROC, (nproc, nproc)),
        (resource.RLIMIT_CORE, (0, 0)),
    ]

    def apply():
        for which, value in settings:
            try:
                resource.setrlimit(which, value)
            except (ValueError, OSError):
                pass

    return [], apply


class Usage:
    """CPU time and peak memory of the script's processes (what RUSAGE_CHILDREN says).

    Without the resource module (os.wait4 needs it too), CPU time comes from the cutime and
    cstime of /proc/self/stat and peak memory from sampling the script's VmHWM.
    """

    def __init__(self):
        self.cpu_s = 0.0
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
            self.cpu_s += usage.ru_utime + usage.ru_stime
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

    def cpu_seconds(self):
        if resource is not None:
            return self.cpu_s
        try:
            with open("/proc/self/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return 0.0


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
    make_undumpable()

    stop = {"signal": None}

    def on_term(signum, frame):
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    emitter = Emitter(nonce, int(limits.get("output_bytes", 1 << 20)))
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
    }
    prefix, apply_limits = child_limits(limits)
    argv = prefix + [sys.executable, "-u", os.path.join(code_dir, "script.py")]
    oom_before = oom_kills()
    usage = Usage()
    started = time.monotonic()
    pid, out_r, err_r = spawn(argv, env, os.path.join(code_dir, "stdin"), apply_limits)

    fds = {out_r: "O", err_r: "E"}
    status = None
    reason = None  # why the wrapper stopped the script: wall_time, output_limit, terminated
    deadline = started + wall_limit
    while True:
        # PID 1 inherits orphans: reap them all, noting the script's own status.
        usage.sample(pid)
        while True:
            done, st = usage.reap()
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
    while usage.reap()[0]:
        pass
    emitter.flush()

    cpu_s = usage.cpu_seconds()
    exit_code = sig = None
    if os.WIFEXITED(status):
        exit_code = os.WEXITSTATUS(status)
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        exit_code = 128 + sig
    oom_after = oom_kills()
    oom = None if oom_after is None or oom_before is None else oom_after > oom_before
    if reason is None and (sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_s >= cpu_limit)):
        reason = "cpu_time"
    if reason is None and sig == signal.SIGKILL and oom:
        reason = "memory_limit"
    result = {
        "exit_code": exit_code,
        "signal": sig,
        "reason": reason,
        "oom_killed": oom,
        "output_truncated": emitter.truncated["O"],
        "errors_truncated": emitter.truncated["E"],
        "wall_time_ms": wall_ms,
        "cpu_time_ms": int(cpu_s * 1000),
        "peak_memory_kb": int(usage.maxrss_kb),
    }
    emitter.write_line("R", to_json(result).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())

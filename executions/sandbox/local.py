"""The local backend: each run in a bubblewrap sandbox, held by cgroups (or rlimits).

How one run goes:

1. A cgroup per run (memory + swap, pids, cpu quota; usage read back at the end) named after
   the run: /sys/fs/cgroup/<controller>/<SANDBOX_NAME>/<run> (v1) or
   /sys/fs/cgroup/<SANDBOX_NAME>/<run> (v2). Where neither is writable, rlimits stand in
   (one warning per process).
2. A launcher, /bin/sh, joins that cgroup by writing "0" to its cgroup.procs files, reads one
   line from stdin (rlimits, then `exec bwrap`) and evals it; the rest of its stdin is the
   script's stdin. So the sandbox and everything it starts are inside before the script runs,
   without preexec_fn (the worker runs several sandboxes from threads). Joining a v1 cgroup
   makes the kernel wait for an RCU grace period (~10 ms here), so on v1 the backend keeps a
   spare launcher that has already joined a fresh cgroup, renamed to the run's when taken.
3. The sandbox is never host root. A worker running as root has its launchers give up root
   (uid and gid SANDBOX_HOST_UID, no supplementary groups, no capabilities) once they are in
   their cgroup and before they wait for a run, so bubblewrap's user namespace maps the
   sandbox's uid to that unprivileged host uid, not to 0. That uid cannot reach interpreters
   under /root (mode 700), so the launchers first enter a private mount namespace, made once
   per backend by a waiting root process ("stage"), in which the directories it cannot reach
   are bind-mounted read-only under a tmpfs at /mnt; bubblewrap binds them from there to
   their usual paths. Nothing changes on the host. A worker that is not root needs none of
   this: bubblewrap maps the sandbox to the worker's own uid.
4. bubblewrap unshares every namespace, runs the script as uid 65534 with no capabilities,
   binds read-only only /usr (with the /bin, /lib ... links) and the interpreter's prefix,
   and gives a size-capped /tmp. Python runs without site (-S): the standard library only,
   with exit, quit and help supplied by PRELUDE. The script comes from a memfd (bound read-only at
   /scripts/script.py), so a run leaves no files behind. The launcher holds that memfd and
   the one with bubblewrap's arguments from its start; the run writes them.
5. One loop waits on stdout, stderr, the process (pidfd), the wall clock and the cancel event.
   Killing bubblewrap's monitor kills its pid-1 (--die-with-parent), which takes the whole pid
   namespace with it; the cgroup is then emptied and removed.
"""

import atexit
import contextlib
import logging
import math
import os
import re
import selectors
import shlex
import signal
import stat
import subprocess
import threading
import time
import uuid

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from executions.limits import human_bytes
from executions.sandbox._local_cgroup import Hierarchy, RunCgroup, find_hierarchy
from executions.sandbox.base import (
    CANCELLED,
    COMPLETED,
    FAILED,
    MEMORY_LIMIT,
    OUTPUT_LIMIT,
    SCRIPT_ERROR,
    SYSTEM_ERROR,
    TIMEOUT,
    Backend,
    RunResult,
    RunSpec,
    system_error,
)

log = logging.getLogger(__name__)

BWRAP = "bwrap"
SH = "/bin/sh"
UNSHARE = "unshare"  # util-linux, like the two below
NSENTER = "nsenter"
MOUNT = "mount"
SCRIPT_PATH = "/scripts/script.py"

SCRIPT_DIR = "/scripts"


def prelude(script_fd: int) -> str:
    """The code python -c runs first: wait for the script on the pipe script_fd (a warm
    sandbox starts before its script exists), keep it at SCRIPT_PATH for tracebacks, then run
    it as `python SCRIPT_PATH` would: as __main__, with __file__ and sys.argv set, tracebacks
    that start at the script, and what -S leaves out of site but scripts use (exit, quit, help;
    not the interactive copyright/credits/license printers, whose set-up imports os). Skipping
    site saves about 2.5 ms a run. One line (the launcher evals a line); Python 3.8+."""
    return "; ".join(
        [
            "import sys, builtins, _sitebuiltins",
            'builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")',
            'builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")',
            "builtins.help = _sitebuiltins._Helper()",
            # Drop the prelude's own frame; newer Pythons print value.__traceback__: set it.
            "sys.excepthook = lambda kind, value, tb, show=sys.__excepthook__: "
            "show(kind, value.with_traceback(tb.tb_next), tb.tb_next) if tb is not None "
            "else show(kind, value, tb)",
            f'sys.argv[:] = ["{SCRIPT_PATH}"]',
            f'_file = open({script_fd}, "rb")',
            "_source = _file.read()",
            "_file.close()",
            # The file is for tracebacks' source lines only: a script too big for SCRIPT_DIR
            # still runs. Then read-only, like all outside /tmp (posix is built in: no import).
            "exec("
            + repr(
                "try:\n"
                f"    with open({SCRIPT_PATH!r}, 'wb') as _file:\n"
                "        _file.write(_source)\n"
                f"    __import__('posix').chmod({SCRIPT_PATH!r}, 0o444)\n"
                "except OSError:\n"
                "    pass\n"
                f"__import__('posix').chmod({SCRIPT_DIR!r}, 0o555)\n"
            )
            + ")",
            f'_code = compile(_source, "{SCRIPT_PATH}", "exec", dont_inherit=True)',
            f'__file__ = "{SCRIPT_PATH}"',
            "del sys, builtins, _sitebuiltins, _file, _source",
            'exec(globals().pop("_code"))',
        ]
    )


SPARE_PREFIX = "spare-"
RECIPES = 3  # how many (runtime, limits) recipes keep spares: the versions in recent use
READY = b"R"  # a launcher prints this once it is in its cgroup
READY_TIMEOUT_S = 1.0
SANDBOX_UID = 65534  # nobody, inside the sandbox
DEFAULT_HOST_UID = 65534  # what it is on the host when the worker runs as root
# Where the stage's tmpfs is mounted, in its private mount namespace only: the first that exists.
STAGE_MOUNTS = ("/mnt", "/media", "/srv")
STAGE_TIMEOUT_S = 5.0
SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "HOME": "/tmp",
}
# What sh and bwrap themselves see: nothing of the worker's environment reaches the sandbox,
# not even through /proc/1/environ of bubblewrap's pid-1.
LAUNCH_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
# Merged-/usr systems have these as links into /usr; older ones as real directories.
ROOT_DIRS = ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
# Read-only over the sandbox's /proc. The sandbox is an unprivileged host uid, so root-owned
# files there are closed to it anyway; these two stay covered as a second line: /proc/sys (the
# kernel's knobs) and /proc/pressure (world-writable PSI triggers). Each cover costs ~0.5 ms.
PROC_COVERS = ("/proc/sys", "/proc/pressure")
OPEN_FILES = 256
KILL_GRACE_S = 1.0  # after a kill, how long to keep reading what was already printed
READ_CHUNK = 65536
LAUNCH_FAILED = 125  # the launcher could not join the cgroup or set a limit

_warned_rlimits = False
_warn_lock = threading.Lock()


def _warn_once(message: str) -> None:
    global _warned_rlimits
    with _warn_lock:
        if not _warned_rlimits:
            _warned_rlimits = True
            log.warning(message)


def _run_name(run_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "", run_id or "")[:64].lstrip(".")
    return name or uuid.uuid4().hex


def _memfd(name: str) -> int:
    """An empty memfd, close-on-exec here (a launcher gets it through pass_fds)."""
    return os.memfd_create(name, os.MFD_CLOEXEC)


def _fill(fd: int, data: bytes) -> None:
    """Write data to a launcher's memfd from its start and rewind it: the launcher shares the
    file offset, so what it (bubblewrap) reads starts at the beginning."""
    os.ftruncate(fd, 0)
    view = memoryview(data)
    offset = 0
    while offset < len(view):
        offset += os.pwrite(fd, view[offset:], offset)
    os.lseek(fd, 0, os.SEEK_SET)


def host_ids() -> tuple[int, int] | None:
    """(uid, gid) the launchers drop to when the worker is root; None when it is not."""
    if os.geteuid() != 0:
        return None
    raw = getattr(settings, "SANDBOX_HOST_UID", DEFAULT_HOST_UID)
    try:
        uid = int(raw)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"SANDBOX_HOST_UID: {raw!r} is not a number") from None
    if uid <= 0 or uid >= 2**32 - 1:
        raise ImproperlyConfigured(
            f"SANDBOX_HOST_UID: {uid} would let the sandbox act as host root (or is invalid); "
            "use an unprivileged uid that owns nothing, such as 65534."
        )
    return uid, uid


def _can_search(directory: str, uid: int, gid: int) -> bool:
    """Whether uid (with only gid, no supplementary groups) may traverse directory."""
    try:
        st = os.stat(directory)
    except OSError:
        return True  # nothing to stage; bubblewrap reports the missing path
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def stage_root(prefix: str, uid: int, gid: int) -> str | None:
    """The directory to bind-mount where uid can reach it so that it reaches prefix (the child
    of the deepest ancestor it cannot traverse: /root/.pyenv for /root/.pyenv/versions/3.12.1),
    or None when it reaches prefix as it is."""
    parts = [p for p in prefix.split("/") if p]
    ancestors = ["/"] + ["/" + "/".join(parts[: i + 1]) for i in range(len(parts) - 1)]
    blocked = -1
    for i, directory in enumerate(ancestors):
        if not _can_search(directory, uid, gid):
            blocked = i
    return None if blocked < 0 else "/" + "/".join(parts[: blocked + 1])


class _Stage:
    """A private mount namespace with the directories the sandbox's host uid cannot reach
    bind-mounted read-only under a tmpfs at STAGE_MOUNTS[0] (/mnt), held by a root process
    that waits on its stdin (so it leaves with the worker). Launchers enter it with nsenter
    before they give up root; the host's mounts are untouched."""

    def __init__(self, roots: tuple[str, ...]):
        mount_at = next(
            (d for d in STAGE_MOUNTS if os.path.isdir(d) and not os.path.islink(d)), None
        )
        if mount_at is None:
            raise OSError(f"no directory to stage interpreters on (tried {STAGE_MOUNTS})")
        self.places = {root: f"{mount_at}/{i}" for i, root in enumerate(roots)}
        q = shlex.quote
        steps = [
            f"{MOUNT} -t tmpfs -o mode=0755,size=64k,nosuid,nodev integr8s-stage {q(mount_at)}"
        ]
        for root, place in self.places.items():
            steps += [
                f"mkdir {q(place)}",
                f"{MOUNT} --bind {q(root)} {q(place)}",
                f"{MOUNT} -o remount,bind,ro,nosuid,nodev {q(place)}",
            ]
        program = (
            f"{{ {' && '.join(steps)}; }} || exit {LAUNCH_FAILED}; printf {READY.decode()}; "
            "while read -r _; do :; done"
        )
        self.proc = subprocess.Popen(
            [UNSHARE, "--mount", "--propagation", "private", "--", SH, "-c", program, "sandbox"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=LAUNCH_ENV,
            start_new_session=True,
        )
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(self.proc.stdout, selectors.EVENT_READ)
                ready = bool(sel.select(STAGE_TIMEOUT_S)) and self.proc.stdout.read(1) == READY
            if not ready:
                self.close()
                why = self.proc.stderr.read().decode(errors="replace").strip()
                raise OSError(f"could not stage the interpreters: {why or 'no answer'}")
        finally:
            self.proc.stdout.close()
        self.proc.stderr.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def covers(self, root: str | None) -> bool:
        return root is None or root in self.places

    def source(self, prefix: str, root: str | None) -> str:
        """Where prefix is found inside the stage."""
        return prefix if root is None else self.places[root] + prefix[len(root) :]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _Output:
    """stdout and stderr, capped together."""

    def __init__(self, cap: int):
        self.cap = cap
        self.total = 0
        self.chunks = {"out": [], "err": []}
        self.truncated = {"out": False, "err": False}

    def add(self, stream: str, data: bytes) -> bool:
        """Keep data up to the cap; False once the cap is passed."""
        room = self.cap - self.total
        if len(data) > room:
            self.chunks[stream].append(data[: max(room, 0)])
            self.total = self.cap
            self.truncated[stream] = True
            return False
        self.chunks[stream].append(data)
        self.total += len(data)
        return True

    def text(self, stream: str) -> str:
        return b"".join(self.chunks[stream]).decode("utf-8", errors="replace")


class _Launcher:
    """/bin/sh in its cgroup (if any), waiting to exec a run's sandbox; see LocalBackend."""

    def __init__(self, proc, group, stage, recipe, script_w: int):
        self.proc = proc
        self.group: RunCgroup | None = group
        self.stage: _Stage | None = stage  # the mount namespace it entered (as root only)
        self.recipe = recipe  # (runtime, limits) its sandbox was started for
        self.script_w = script_w  # the pipe its interpreter waits on for the script
        self.ready = False  # READY read from stdout: in its cgroup, unprivileged (as root)

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the launcher has joined its cgroup (and so may be renamed)."""
        if not self.ready:
            fd = self.proc.stdout.fileno()
            with selectors.DefaultSelector() as sel:
                sel.register(fd, selectors.EVENT_READ)
                if sel.select(timeout):
                    self.ready = os.read(fd, len(READY)) == READY
        return self.ready

    def finish(self) -> None:
        """Make sure the process is gone and reaped, and its pipes and memfds closed."""
        if self.proc.returncode is None:
            with contextlib.suppress(OSError):
                self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                pipe.close()
        self.deliver(b"")

    def deliver(self, script: bytes) -> None:
        """Hand the waiting interpreter its script (and end-of-file); once only."""
        if self.script_w < 0:
            return
        try:
            view = memoryview(script)
            while view:  # blocks while the interpreter reads, for scripts beyond a pipe's 64 KiB
                view = view[os.write(self.script_w, view) :]
        except OSError:  # the sandbox is gone: the run reports how it ended
            pass
        finally:
            os.close(self.script_w)
            self.script_w = -1

    def discard(self) -> None:
        self.finish()
        if self.group is not None:
            self.group.remove()


class LocalBackend(Backend):
    name = "local"

    def __init__(
        self,
        cgroup_root: str | None = "/sys/fs/cgroup",
        name: str | None = None,
        spares: int = 1,
    ):
        """cgroup_root=None (or a path that is not a writable cgroup tree) means rlimits only.

        spares: launchers kept ready inside fresh cgroups (v1 only, where cgroups can be
        renamed), so a run does not wait for the kernel to move a process into one.
        """
        self.sandbox_name = name or settings.SANDBOX_NAME
        # Run as root, the launchers give up root for these before they exec bubblewrap.
        self.host_ids = host_ids()
        self.hierarchy: Hierarchy | None = find_hierarchy(cgroup_root or "", self.sandbox_name)
        if self.hierarchy is None:
            _warn_once(
                f"No writable cgroup tree (tried {cgroup_root!r}): the local sandbox limits "
                "memory, processes and CPU with rlimits only, which are per process and weaker."
            )
        self.mode = self.hierarchy.version if self.hierarchy else "rlimits"
        self.spares = spares if self.mode == "v1" else 0
        self._pool: list[_Launcher] = []
        self._recipes: list[tuple] = []  # (runtime, limits) of recent runs, newest first
        self._pool_lock = threading.Lock()
        self._pool_wanted = threading.Condition(self._pool_lock)  # the refiller waits on it
        self._refiller: threading.Thread | None = None
        self._closed = False
        self._stage: _Stage | None = None  # the one new launchers enter
        self._stages: list[_Stage] = []  # every one made (launchers may still be entering)
        self._stage_lock = threading.Lock()
        self._roots: dict[str, str | None] = {}  # prefix -> stage_root(), known so far
        if self.spares or self.host_ids:
            atexit.register(self.close)  # spares would leave empty cgroups behind
        self.base_args = self._base_args()
        # /proc/sys and friends read-only over the new /proc. The sandbox is not host root
        # any more (see host_ids), so its uid could not write root-owned sysctls anyway; this
        # stays as a second line (and for a SANDBOX_HOST_UID that owns something).
        self.proc_covers = []
        for path in PROC_COVERS:
            if os.path.exists(path):
                self.proc_covers += ["--ro-bind", path, path]

    # --- the sandbox command -----------------------------------------------------------

    @staticmethod
    def _base_args() -> list[str]:
        args = [
            "--unshare-all",
            "--unshare-user",  # --unshare-all only tries; we insist
            "--disable-userns",
            "--cap-drop", "ALL",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
            "--uid", str(SANDBOX_UID),
            "--gid", str(SANDBOX_UID),
            "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr",
        ]  # fmt: skip
        for path in ROOT_DIRS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        for name, value in SANDBOX_ENV.items():
            args += ["--setenv", name, value]
        return args

    def command(self, spec: RunSpec, source: str) -> list[str]:
        """bubblewrap's options (for --args): the prefix bound from source (itself, or where
        the stage has it); SCRIPT_DIR is where the prelude puts the script it is sent."""
        prefix = spec.runtime.prefix
        limits = spec.limits
        shm_bytes = max(limits.tmp_bytes // 4, 1024 * 1024)
        return self.base_args + [
            "--ro-bind", source, prefix,
            "--proc", "/proc",
            *self.proc_covers,
            "--dev", "/dev",
            "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
            "--size", str(shm_bytes), "--tmpfs", "/dev/shm",
            "--perms", "0700", "--size", str(limits.script_bytes + 65536), "--tmpfs", SCRIPT_DIR,
            "--remount-ro", "/dev",
            "--remount-ro", "/",
            "--chdir", "/tmp",
        ]  # fmt: skip

    @staticmethod
    def python(spec: RunSpec, script_fd: int) -> list[str]:
        """The command bubblewrap runs: unbuffered, isolated (no environment, no user site),
        without site, so no site-packages and no start-up .pth files (see prelude())."""
        return [spec.runtime.executable, "-u", "-B", "-I", "-S", "-c", prelude(script_fd)]

    def rlimits(self, spec: RunSpec, cgroup: bool) -> str:
        """The launcher's `ulimit`s, inherited through exec by bubblewrap and the script."""
        limits = spec.limits
        steps = [
            # SIGXCPU at the limit says "CPU time" unambiguously; SIGKILL a second later.
            f"ulimit -S -t {math.ceil(limits.cpu_time_s)}",
            f"ulimit -H -t {math.ceil(limits.cpu_time_s) + 1}",
            f"ulimit -f {max(limits.tmp_bytes // 512, 1)}",  # dash counts 512-byte blocks
            "ulimit -c 0",
            f"ulimit -n {OPEN_FILES}",
        ]
        if not cgroup:  # per-process limits are all there is
            steps += [
                f"ulimit -v {limits.memory_bytes // 1024}",
                f"ulimit -p {limits.processes + 2}",
            ]
        return f"{{ {' && '.join(steps)}; }} || exit {LAUNCH_FAILED}"

    def bwrap(self, spec: RunSpec, args_fd: int, script_fd: int) -> list[str]:
        """bubblewrap with its options (NUL separated, see command()) from the memfd args_fd,
        which it reads and closes, and the interpreter waiting on script_fd."""
        return [BWRAP, "--args", str(args_fd), *self.python(spec, script_fd)]

    # --- staging (root only) -------------------------------------------------------------

    def _root_of(self, prefix: str) -> str | None:
        if self.host_ids is None:
            return None
        if prefix not in self._roots:
            self._roots[prefix] = stage_root(prefix, *self.host_ids)
        return self._roots[prefix]

    def _current_stage(self, root: str | None = None) -> _Stage | None:
        """The stage new launchers enter, made (again) if it does not hold root yet."""
        if self.host_ids is None:
            return None
        with self._stage_lock:
            stage = self._stage
            if stage is None or not stage.alive() or not stage.covers(root):
                roots = tuple(stage.places) if stage is not None else ()
                if root is not None and root not in roots:
                    roots += (root,)
                stage = _Stage(roots)
                self._stage = stage
                self._stages.append(stage)
            return stage

    # --- launchers -----------------------------------------------------------------------
    #
    # A launcher is /bin/sh that joins a run's cgroup, sets the rlimits and execs bubblewrap
    # (as root, through one nsenter that enters the stage and gives up root), whose
    # interpreter then waits on a pipe for its script (see prelude()). The backend keeps
    # spare launchers for the (runtime, limits) recipes of recent runs: a run takes one whose
    # sandbox and interpreter have already started, renames its cgroup after the run, sets
    # the limits, sends the script and its stdin. Each sandbox still serves one run only;
    # what is saved is waiting: joining a cgroup v1 costs an RCU grace period (about 10 ms
    # here), and bubblewrap and the interpreter start while the previous run goes.

    def _spawn(self, group: RunCgroup | None, stage: "_Stage | None", spec: RunSpec) -> _Launcher:
        joins = (
            " && ".join(f"echo 0 > {shlex.quote(p)}" for p in group.join_paths) if group else ":"
        )
        prefix = spec.runtime.prefix
        source = prefix if stage is None else stage.source(prefix, self._root_of(prefix))
        args_fd = _memfd("args")
        script_r, script_w = os.pipe2(os.O_CLOEXEC)
        try:
            # A file of arguments spares dash reading a long line one byte at a time.
            _fill(args_fd, "\0".join(self.command(spec, source)).encode() + b"\0")
            argv = self.bwrap(spec, args_fd, script_r)
            if stage is not None:
                uid, gid = self.host_ids
                # nsenter --setgid also clears the supplementary groups.
                argv = [
                    NSENTER, "--target", str(stage.proc.pid), "--mount",
                    "--setuid", str(uid), "--setgid", str(gid), "--", *argv,
                ]  # fmt: skip
            program = (
                f"{{ {joins}; }} || exit {LAUNCH_FAILED}; printf {READY.decode()}; "
                f"{self.rlimits(spec, group is not None)}; exec {shlex.join(argv)}"
            )
            proc = subprocess.Popen(
                [SH, "-c", program, "sandbox"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=LAUNCH_ENV,
                start_new_session=True,
                pass_fds=[args_fd, script_r],
            )
        except BaseException:
            os.close(script_w)
            raise
        finally:
            os.close(args_fd)
            os.close(script_r)
        return _Launcher(proc, group, stage, (spec.runtime, spec.limits), script_w)

    def _take(self, name: str, spec: RunSpec) -> _Launcher:
        """A launcher for spec's recipe whose cgroup is named `name` and holds spec's limits:
        a spare that is ready, or a new one."""
        recipe = (spec.runtime, spec.limits)
        root = self._root_of(spec.runtime.prefix)
        stage = self._current_stage(root)
        if self.hierarchy is None:
            return self._spawn(None, stage, spec)
        spare = None
        while spare is None:
            with self._pool_lock:
                candidate = next((la for la in self._pool if la.recipe == recipe), None)
                if candidate is not None:
                    self._pool.remove(candidate)
            if candidate is None:
                break
            if (
                candidate.proc.poll() is None
                and (candidate.stage is None or candidate.stage.covers(root))
                and candidate.wait_ready(READY_TIMEOUT_S)
            ):
                spare = candidate
            else:
                candidate.discard()
        self._want_spares(recipe)  # made while this run goes
        if spare is not None:
            try:
                try:
                    spare.group.rename(name)
                except FileExistsError:  # a crashed earlier attempt of the same run
                    self.hierarchy.attach(name).remove()
                    spare.group.rename(name)
                spare.group.apply_limits(spec.limits)
            except BaseException:
                spare.discard()
                raise
            return spare
        try:
            group = self.hierarchy.create(name, spec.limits)
        except FileExistsError:
            self.hierarchy.attach(name).remove()
            group = self.hierarchy.create(name, spec.limits)
        try:
            return self._spawn(group, stage, spec)
        except BaseException:
            group.remove()
            raise

    def _want_spares(self, recipe) -> None:
        """Put recipe first among those kept ready (at most RECIPES), and have the refiller
        thread top the pool up: the spawn then overlaps the run instead of adding to it."""
        if not self.spares:
            return
        with self._pool_lock:
            if self._closed:
                return
            if recipe in self._recipes:
                self._recipes.remove(recipe)
            self._recipes.insert(0, recipe)
            del self._recipes[RECIPES:]
            if self._refiller is None:
                self._refiller = threading.Thread(
                    target=self._refill_loop, name="sandbox-spares", daemon=True
                )
                self._refiller.start()
            self._pool_wanted.notify()

    def _missing(self) -> tuple[tuple | None, list[_Launcher]]:
        """(a recipe short of spares or None, spares of recipes no longer kept); pool locked."""
        stale = [la for la in self._pool if la.recipe not in self._recipes]
        for launcher in stale:
            self._pool.remove(launcher)
        for recipe in self._recipes:
            if sum(la.recipe == recipe for la in self._pool) < self.spares:
                return recipe, stale
        return None, stale

    def _refill_loop(self) -> None:
        while True:
            with self._pool_lock:
                recipe, stale = self._missing()
                while recipe is None and not stale and not self._closed:
                    self._pool_wanted.wait()
                    recipe, stale = self._missing()
                if self._closed:
                    return
            for launcher in stale:
                launcher.discard()
            if recipe is None:
                continue
            try:
                self._refill(recipe)
            except Exception:
                log.exception("local sandbox could not start a spare launcher")
                time.sleep(1.0)  # runs still get fresh launchers meanwhile

    def _refill(self, recipe) -> None:
        runtime, limits = recipe
        spec = RunSpec(script="", runtime=runtime, limits=limits)
        stage = self._current_stage(self._root_of(runtime.prefix))
        group = self.hierarchy.create(f"{SPARE_PREFIX}{uuid.uuid4().hex}")
        try:
            launcher = self._spawn(group, stage, spec)
        except BaseException:
            group.remove()
            raise
        with self._pool_lock:
            if not self._closed:
                self._pool.append(launcher)
                return
        launcher.discard()

    def close(self) -> None:
        """Stop the spare launchers, remove their cgroups, let the stages go."""
        with self._pool_lock:
            self._closed = True
            pool, self._pool = self._pool, []
            refiller, self._refiller = self._refiller, None
            self._pool_wanted.notify_all()
        if refiller is not None and refiller is not threading.current_thread():
            refiller.join(timeout=5)
        for launcher in pool:
            launcher.discard()
        with self._stage_lock:
            stages, self._stages, self._stage = self._stages, [], None
        for stage in stages:
            stage.close()

    # --- one run -------------------------------------------------------------------------

    def run(self, spec: RunSpec, cancel: threading.Event) -> RunResult:
        executable = spec.runtime.executable
        if not executable or not os.access(executable, os.X_OK):
            return system_error(
                spec,
                f"Python {spec.runtime.version} is not installed on this server "
                f"({executable or 'no interpreter configured'}).",
            )
        name = _run_name(spec.run_id)
        launcher = None
        try:
            started = time.monotonic()
            launcher = self._take(name, spec)
            launcher.deliver(spec.script.encode("utf-8", "surrogatepass"))
            feed = (spec.stdin or "").encode("utf-8", "surrogatepass")
            return self._supervise(spec, launcher, feed, started, cancel)
        except OSError as exc:
            log.exception("local sandbox failed to start run %s", name)
            return system_error(spec, f"The sandbox could not start: {exc}")
        finally:
            if launcher is not None:
                launcher.finish()
                if launcher.group is not None and not launcher.group.remove():
                    log.error("could not remove cgroup of run %s", name)

    def _supervise(self, spec, launcher, feed: bytes, started: float, cancel) -> RunResult:
        limits = spec.limits
        proc, group = launcher.proc, launcher.group
        output = _Output(limits.output_bytes)
        stopped = ""  # why we killed it: cancelled, timeout, output_limit
        pidfd = None
        sel = selectors.DefaultSelector()
        try:
            with contextlib.suppress(OSError):
                pidfd = os.pidfd_open(proc.pid)
                sel.register(pidfd, selectors.EVENT_READ, "exit")
            for stream, pipe in (("out", proc.stdout), ("err", proc.stderr)):
                os.set_blocking(pipe.fileno(), False)
                sel.register(pipe, selectors.EVENT_READ, stream)
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE, "in")
            feed_view = memoryview(feed)
            open_pipes = 2
            exited = False
            reaped = None
            deadline = started + limits.wall_time_s
            drain_until = None
            while open_pipes or not exited:
                now = time.monotonic()
                if drain_until is not None:
                    if now >= drain_until:
                        break
                    wait = drain_until - now
                else:
                    if cancel.is_set():
                        stopped = CANCELLED
                    elif now >= deadline:
                        stopped = TIMEOUT
                    if stopped:
                        self._kill(proc, pidfd, group)
                        drain_until = now + KILL_GRACE_S
                        continue
                    wait = min(0.1, deadline - now)
                if pidfd is None and not exited:  # no pidfd (old kernel): look each pass
                    pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
                    if pid:
                        reaped, exited = (status, rusage), True
                for key, _ in sel.select(wait):
                    if key.data == "exit":
                        exited = True
                        sel.unregister(key.fileobj)
                    elif key.data == "in":
                        feed_view = self._feed(proc, sel, feed_view)
                    else:
                        try:
                            data = os.read(key.fileobj.fileno(), READ_CHUNK)
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
                        if not output.add(key.data, data) and not stopped:
                            stopped = OUTPUT_LIMIT
                            self._kill(proc, pidfd, group)
                            drain_until = time.monotonic()  # nothing more is kept
            if not exited or drain_until is not None:
                self._kill(proc, pidfd, group)
            if reaped is None:
                _, status, rusage = os.wait4(proc.pid, 0)
            else:
                status, rusage = reaped
            proc.returncode = os.waitstatus_to_exitcode(status)
            wall_ms = int((time.monotonic() - started) * 1000)
        finally:
            sel.close()
            if pidfd is not None:
                os.close(pidfd)
        if group is not None:
            group.kill()  # anything left (nothing should be): gone before we measure
            cpu_ms, peak_kb, oom = group.usage()
        else:
            cpu_ms = int((rusage.ru_utime + rusage.ru_stime) * 1000)
            peak_kb, oom = rusage.ru_maxrss, False
        return self._result(spec, proc.returncode, output, stopped, wall_ms, cpu_ms, peak_kb, oom)

    @staticmethod
    def _feed(proc, sel, rest: memoryview) -> memoryview:
        """Write what the pipe takes of the launcher's line and the script's stdin."""
        try:
            rest = rest[os.write(proc.stdin.fileno(), rest) :]
        except BlockingIOError:
            return rest
        except OSError:  # the script exited or closed its stdin: the rest is not wanted
            rest = rest[len(rest) :]
        if not rest:
            sel.unregister(proc.stdin)
            proc.stdin.close()
        return rest

    @staticmethod
    def _kill(proc, pidfd, group) -> None:
        with contextlib.suppress(ProcessLookupError, OSError):
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            else:
                proc.kill()
        if group is not None:
            group.kill()

    def _result(self, spec, returncode, output, stopped, wall_ms, cpu_ms, peak_kb, oom):
        limits = spec.limits
        out, err = output.text("out"), output.text("err")
        exit_code = returncode if returncode >= 0 else 128 - returncode
        result = RunResult(
            status=COMPLETED,
            exit_code=exit_code,
            output=out,
            errors=err,
            output_truncated=output.truncated["out"],
            errors_truncated=output.truncated["err"],
            wall_time_ms=wall_ms,
            cpu_time_ms=cpu_ms,
            peak_memory_kb=peak_kb,
            python_version=spec.runtime.version,
            extra={"backend": self.name, "limits_by": self.mode},
        )
        cpu_limit_ms = limits.cpu_time_s * 1000
        cpu_killed = exit_code == 128 + signal.SIGXCPU or (
            exit_code == 128 + signal.SIGKILL
            and cpu_ms is not None
            and cpu_ms >= cpu_limit_ms * 0.9
        )
        if stopped == CANCELLED:
            result.status, result.error_type = CANCELLED, CANCELLED
            result.reason = "Cancelled before it finished."
        elif stopped == OUTPUT_LIMIT:
            result.status, result.error_type = FAILED, OUTPUT_LIMIT
            result.reason = (
                f"Stopped: printed more than {human_bytes(limits.output_bytes)} of output "
                "(stdout and stderr together)."
            )
        elif stopped == TIMEOUT:
            result.status, result.error_type = TIMEOUT, TIMEOUT
            result.reason = f"Stopped: ran longer than {limits.wall_time_s:g} s."
        elif exit_code != 0 and (oom or _memory_error(err)):
            result.status, result.error_type = FAILED, MEMORY_LIMIT
            result.reason = f"Stopped: used more than {human_bytes(limits.memory_bytes)} of memory."
        elif cpu_killed:
            result.status, result.error_type = TIMEOUT, TIMEOUT
            result.reason = f"Stopped: used more than {limits.cpu_time_s:g} s of CPU time."
        elif not out and (
            (exit_code in (1, 126, 127) and err.startswith(("bwrap: ", "nsenter: ")))
            # the launcher's own complaints: a cgroup, an rlimit, a missing bwrap
            or (exit_code in (2, LAUNCH_FAILED, 126, 127) and err.startswith("sandbox: "))
        ):
            log.error("local sandbox failed to start: %s", err.strip())
            result.status, result.error_type = FAILED, SYSTEM_ERROR
            result.exit_code = None
            result.reason = f"The sandbox could not start: {err.strip().partition(': ')[2]}"
        elif exit_code != 0:
            result.error_type = SCRIPT_ERROR
            if exit_code > 128:
                result.reason = _signal_reason(exit_code)
        return result

    # --- housekeeping --------------------------------------------------------------------

    def cleanup_stale(self, live_run_ids: set[str] | None = None) -> int:
        if self.hierarchy is None:
            return 0
        live = {_run_name(r) for r in (live_run_ids or ())}
        with self._pool_lock:
            live |= {os.path.basename(s.group.dirs["memory"]) for s in self._pool}
        removed = 0
        for name, group in self.hierarchy.leftovers().items():
            if name in live:
                continue
            # A spare of another live worker holds a waiting launcher; a dead worker's spare
            # launcher read end-of-file and left, so its cgroup is empty.
            if name.startswith(SPARE_PREFIX) and not group.is_empty():
                continue
            if group.remove():
                removed += 1
            else:
                log.error("could not remove leftover sandbox cgroup %s", name)
        if removed:
            log.info("removed %d leftover sandbox cgroup(s)", removed)
        return removed


def _memory_error(errors: str) -> bool:
    """Under rlimits (and rarely under cgroups) Python reports MemoryError instead of dying."""
    tail = errors.rstrip().rsplit("\n", 1)[-1]
    return tail.startswith("MemoryError")


def _signal_reason(exit_code: int) -> str:
    try:
        name = signal.Signals(exit_code - 128).name
    except ValueError:
        return f"The script exited with code {exit_code}."
    return f"The script was killed by signal {name}."

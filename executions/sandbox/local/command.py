"""What a local sandbox is made of: bubblewrap's options, the interpreter's command line and
the launcher's shell program. Only plain data and strings here; nothing is started.

Allowed, and why (everything else is denied or absent):
- namespaces: all unshared (user, mount, pid, network, ipc, uts, cgroup), no user namespaces
  inside, no capabilities, a new session (no terminal to inject into), a cleared environment;
- files: /usr read-only for the system libraries (with /usr/local and /usr/src covered: host
  configuration and sources, nothing an interpreter needs), the interpreter's own prefix
  read-only (with its site-packages covered), a private size-capped /tmp (the working
  directory) and /dev/shm, bubblewrap's minimal /dev without ptys, and the pid namespace's own
  /proc with the host-identifying and kernel-internal files masked (command line, boot id and
  every /proc/sys knob, kernel config and symbols, hardware and disk tables, keys, cgroups);
- system calls: the seccomp allow-list in seccomp.py (io_uring, userfaultfd, keyrings, ptrace,
  bpf, perf, mounts, namespaces and sync fail with EPERM); sockets: AF_UNIX only, whose buffers
  the memory cgroup charges (cgroup v1 does not charge TCP/UDP buffers). Without cgroups (the
  rlimits fallback) a run is one process with threads, few descriptors and no memfds.
"""

import functools
import glob
import math
import os
import resource
import shlex
import shutil
import stat

from executions.sandbox.contract import INPUTS_DIR, RunSpec

BWRAP = "bwrap"
SH = "/bin/sh"
UNSHARE = "unshare"  # util-linux, like the two below
NSENTER = "nsenter"
PRLIMIT = "prlimit"
# RLIMIT_CORE of 1 byte, soft and hard, from the launcher on (seccomp keeps it there): no core is
# ever written. Not 0: at 0 a crash is still handed to the host's core_pattern helper when that
# is a pipe (Ubuntu's apport, systemd-coredump), which the kernel starts as host root, outside
# the run's cgroup, once per crash; 1 is the kernel's own "never pipe a core" value. dash's
# ulimit counts 512-byte blocks, so util-linux's prlimit sets it.
CORE_LIMIT = "--core=1:1"
# Without cgroups, signals queued at once (RLIMIT_SIGPENDING, which dash cannot set): each POSIX
# timer holds one from its creation, and 96,000 timers held 36 MiB of kernel memory that no
# rlimit counts, beside a 64 MiB limit. With a cgroup that memory is charged to the run.
SIGPENDING_SINGLE_PROCESS = 1024
MOUNT = "mount"
SCRIPT_DIR = "/scripts"
PRELUDE = open(os.path.join(os.path.dirname(__file__), "prelude.py")).read()  # noqa: SIM115
READY = b"R"  # a launcher prints this once it is in its cgroup (and no longer root)
LAUNCH_FAILED = 125  # the launcher could not join the cgroup or set a limit
SANDBOX_UID = 65534  # nobody, inside the sandbox
SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "HOME": "/tmp",
    # BLAS and OpenMP start a thread per core, and fail pthread_create under the process limit.
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    # No display; matplotlib's font cache and config go to the private /tmp.
    "MPLBACKEND": "module://integr8s_plots",  # Agg; plt.show() saves PNGs (prelude.py)
    "MPLCONFIGDIR": "/tmp",
}
# The package sets build_runtimes installs, RUNTIMES_DIR/<version>/site, and where a sandbox
# finds its version's set (read-only; the prelude puts it on sys.path). Not under var/ (mode
# 700, it holds the secret key): the sandbox's host uid must reach it.
RUNTIMES_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
    "runtime-packages",
)
SITE = "/opt/integr8s/site"
# What sh and bwrap themselves see: nothing of the worker's environment reaches the sandbox,
# not even through /proc/1/environ of bubblewrap's pid-1.
LAUNCH_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
# Merged-/usr systems have these as links into /usr; older ones as real directories.
ROOT_DIRS = ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
# Under /usr, but the host's own: its configuration and sources (an interpreter whose prefix is
# in there is bound back over the cover).
USR_COVERS = ("/usr/local", "/usr/src")
# Masked in the sandbox's /proc: what identifies the host (its kernel command line, boot id,
# configuration, hardware and disks) or exposes kernel internals. /proc/sys goes whole: its
# knobs are the kernel's, and boot_id is there. Directories get an empty tmpfs, files /dev/null.
PROC_MASKED_DIRS = (
    "/proc/sys", "/proc/acpi", "/proc/bus", "/proc/driver", "/proc/fs", "/proc/irq",
    "/proc/pressure", "/proc/scsi",
)  # fmt: skip
PROC_MASKED_FILES = (
    "/proc/cmdline", "/proc/config.gz", "/proc/kallsyms", "/proc/keys", "/proc/key-users",
    "/proc/iomem", "/proc/ioports", "/proc/interrupts", "/proc/devices", "/proc/diskstats",
    "/proc/partitions", "/proc/swaps",
    "/proc/cgroups",  # its counts go up and down with the host's runs and containers
    # Root-only ones (kcore, timer_list, sched_debug, slabinfo, sysrq-trigger, kpage*) are
    # closed to the sandbox's unprivileged uid already: a mask each would cost a mount a run.
    "/proc/timer_list", "/proc/sched_debug", "/proc/modules",
)  # fmt: skip
OPEN_FILES = 256
OPEN_FILES_SINGLE_PROCESS = 64  # rlimits fallback: each descriptor can hold a kernel buffer


def base_args() -> list[str]:
    """The options every sandbox shares (computed once per backend: it looks at the host)."""
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
    for path in USR_COVERS:
        if os.path.isdir(path) and not os.path.islink(path):
            args += ["--perms", "0555", "--tmpfs", path]
    for path in ROOT_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for name, value in SANDBOX_ENV.items():
        args += ["--setenv", name, value]
    return args


def proc_masks() -> list[str]:
    """bubblewrap's options that mask PROC_MASKED_* (those this host has) over the new /proc."""
    args: list[str] = []
    for path in PROC_MASKED_DIRS:
        if os.path.isdir(path):
            args += ["--perms", "0555", "--tmpfs", path]
    for path in PROC_MASKED_FILES:
        # Only what others may read: each mask is a mount in every sandbox (~0.2 ms).
        if os.path.exists(path) and os.stat(path).st_mode & stat.S_IROTH:
            args += ["--ro-bind", "/dev/null", path]
    return args


def sandbox_args(base: list[str], masks: list[str], spec: RunSpec, source: str) -> list[str]:
    """bubblewrap's options for one run (given with --args): the interpreter's prefix bound
    from source (itself, or where the stage has it); SCRIPT_DIR is where the prelude keeps the
    script it is sent."""
    limits = spec.limits
    shm_bytes = max(limits.tmp_bytes // 4, 1024 * 1024)
    args = base + [
        "--ro-bind", source, spec.runtime.prefix,
        "--proc", "/proc",
        *masks,
        "--dev", "/dev",
        # No ptys: every devpts but the host's draws on one host-wide pool (kernel.pty.max),
        # and their buffers are not charged to the run; one run took them all.
        "--perms", "0555", "--tmpfs", "/dev/pts",
        *site_covers(spec.runtime.prefix),
        "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
        "--size", str(shm_bytes), "--tmpfs", "/dev/shm",
        "--perms", "0700", "--size", str(limits.script_bytes + 65536), "--tmpfs", SCRIPT_DIR,
        *package_binds(spec.runtime.version),
    ]  # fmt: skip
    # Then the covers among them made read-only: each is a mount of its own, which the
    # read-only remount of / does not reach.
    return args + covers_read_only(args) + [
        "--remount-ro", "/dev",
        "--remount-ro", "/",
        "--chdir", "/tmp",
    ]  # fmt: skip


def covers_read_only(args: list[str]) -> list[str]:
    """--remount-ro for every empty cover in args (a tmpfs made with --perms 0555). A cover is a
    mount of its own, which the read-only remount of / does not reach, and it belongs to the
    sandbox's uid: the script could chmod it and write there, past the /tmp limit (bubblewrap
    gives a tmpfs without --size half the host's memory)."""
    found = []
    for i, arg in enumerate(args):
        if arg == "--tmpfs" and args[i - 2 : i] == ["--perms", "0555"]:
            found += ["--remount-ro", args[i + 1]]
    return found


def input_args(fds: list[tuple[str, int]]) -> list[str]:
    """bubblewrap's options that put input files (name, memfd holding it) read-only in
    INPUTS_DIR: each a read-only bind of bubblewrap's copy, in a tmpfs made read-only after
    (the script can neither change them, nor add, remove or rename anything there)."""
    if not fds:
        return []
    args = ["--perms", "0555", "--size", "65536", "--tmpfs", INPUTS_DIR]
    for name, fd in fds:
        args += ["--perms", "0444", "--ro-bind-data", str(fd), f"{INPUTS_DIR}/{name}"]
    return args + ["--remount-ro", INPUTS_DIR]


def site_dir(version: str) -> str:
    return os.path.join(RUNTIMES_DIR, version, "site")


def package_binds(version: str) -> list[str]:
    """The version's package set, read-only at SITE, where one was built (and any uid may
    reach it: the sandbox's host uid has no rights of its own)."""
    path = site_dir(version)
    if not os.path.isdir(path) or not all_may_search(path):
        return []
    return ["--ro-bind", path, SITE]


def all_may_search(path: str) -> bool:
    while path not in ("/", ""):
        try:
            if not os.stat(path).st_mode & 0o001:
                return False
        except OSError:
            return False
        path = os.path.dirname(path)
    return True


@functools.cache
def site_covers(prefix: str) -> list[str]:
    """Empty covers over the interpreter's own site-packages: -S keeps them off sys.path, but
    one sys.path.append would import whatever the host installed there."""
    args: list[str] = []
    for path in sorted(glob.glob(f"{glob.escape(prefix)}/lib/python*/*-packages")):
        if os.path.basename(path) in ("site-packages", "dist-packages") and os.path.isdir(path):
            args += ["--perms", "0555", "--tmpfs", path]
    return args


def python(spec: RunSpec, script_fd: int, start_fd: int, go_fd: int) -> list[str]:
    """The command bubblewrap runs: unbuffered, isolated (no environment, no user site),
    without site, so no site-packages and no start-up .pth files (see prelude.py)."""
    exe = spec.runtime.executable
    fds = (str(script_fd), str(start_fd), str(go_fd))
    return [exe, "-u", "-B", "-I", "-S", "-c", PRELUDE, *fds]


def rlimits(spec: RunSpec, cgroup: bool) -> str:
    """The launcher's `ulimit`s, inherited through exec by bubblewrap and the script. CPU
    time is the run's, measured on its cgroup; RLIMIT_CPU is a per-process backstop."""
    limits = spec.limits
    steps = [
        f"ulimit -t {math.ceil(limits.cpu_time_s) + 1}",
        f"ulimit -f {max(limits.tmp_bytes // 512, 1)}",  # dash counts 512-byte blocks
        f"ulimit -n {OPEN_FILES if cgroup else OPEN_FILES_SINGLE_PROCESS}",
        # No locked memory: pages of host files the host has cached cost a run nothing to lock
        # (mlock and mmap's MAP_LOCKED; seccomp refuses both as well).
        "ulimit -l 0",
    ]
    if not core_limit_settable():
        steps.append("ulimit -c 0")  # the best this worker can do (see CORE_LIMIT)
    if not cgroup:  # per-process limits are all there is
        steps += [
            f"ulimit -v {limits.memory_bytes // 1024}",
            f"ulimit -p {limits.processes + 2}",
        ]
    return f"{{ {' && '.join(steps)}; }} || exit {LAUNCH_FAILED}"


@functools.cache
def prlimit_found() -> bool:
    return shutil.which(PRLIMIT, path=LAUNCH_ENV["PATH"]) is not None


@functools.cache
def core_limit_settable() -> bool:
    """Whether a launcher may set CORE_LIMIT: prlimit is there, and the worker is root or has a
    hard core limit of at least 1 byte."""
    if not prlimit_found():
        return False
    hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
    return os.geteuid() == 0 or hard == resource.RLIM_INFINITY or hard >= 1


def prlimits(cgroup: bool) -> list[str]:
    """The prlimit command that execs the rest with the limits dash cannot set (CORE_LIMIT, and
    without cgroups SIGPENDING_SINGLE_PROCESS), or [] where there is none to set."""
    options = [CORE_LIMIT] if core_limit_settable() else []
    if not cgroup and prlimit_found():
        options.append(f"--sigpending={SIGPENDING_SINGLE_PROCESS}")
    return [PRLIMIT, *options, "--"] if options else []


def launcher_program(join_paths: list[str], limits_step: str, argv: list[str]) -> str:
    """The launcher's shell program: join the cgroup, say READY, set the rlimits, exec argv."""
    joins = " && ".join(f"echo 0 > {shlex.quote(p)}" for p in join_paths) or ":"
    return (
        f"{{ {joins}; }} || exit {LAUNCH_FAILED}; printf {READY.decode()}; "
        f"{limits_step}; exec {shlex.join(argv)}"
    )

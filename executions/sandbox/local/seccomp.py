"""The local sandbox's seccomp filter: what a script may ask of the kernel.

bubblewrap loads the program just before it runs Python (`bwrap --seccomp FD`), so the filter
covers the interpreter, its threads and everything it starts, and no process in the sandbox can
take it off. Policy:

- Default deny. A syscall not in ALLOW fails with ENOSYS, as on an older kernel, so glibc and
  Python take their fallbacks (clone3 -> clone; faccessat2 -> faccessat where libseccomp is
  too old to know the newer name).
- Known-dangerous syscalls (DENY) fail with EPERM: the kernel's attack surface (io_uring, bpf,
  userfaultfd), the session keyring (not a namespace: bubblewrap keeps the caller's), other
  processes' memory (ptrace and friends), and what needs privileges a sandbox never has
  (mounts, modules, the clock). EPERM says "refused on purpose".
- A few syscalls are judged by their arguments (see _argument_rules): socket() and
  socketpair() for AF_UNIX only (cgroup v1 does not charge TCP/UDP socket buffers to the
  memory cgroup, Unix sockets it does; vsock reaches the host's port space, which no
  namespace covers); clone() without namespace flags; ioctl() without
  TIOCSTI/TIOCLINUX (typing into a terminal) or TIOCSETD; personality() with Docker's values;
  mmap() and memfd_create() without huge pages (the hugetlb pool is not charged to the run)
  or MAP_LOCKED;
  setrlimit() and prlimit64() of anything but the core-dump limit; prctl() without
  PR_SET_PDEATHSIG or PR_SET_SECCOMP; setsockopt() without a socket filter (BPF programs are
  kernel memory outside the run's limit, from a host-wide budget); madvise() without paging out.
- fsync(), fdatasync(), sync_file_range() and msync(MS_SYNC) (NO_OP) return 0 without reaching
  the kernel: on the sandbox's tmpfs they do nothing, and on a read-only descriptor of a host
  file they would flush the host's disk. fadvise64() and madvise(MADV_COLD, MADV_PAGEOUT) too:
  on a host file they would empty the host's page cache.
- Host memory a run could hold without it counting against its limit is refused: mlock() of
  pages the host had cached, splice() and its kind (pipes that pin the host's cache), seccomp
  filters of its own.
- A syscall from a foreign ABI (i386 `int 0x80` or x32 on x86_64, arm32 on aarch64) fails with
  EPERM too. Nothing is ever killed: a script gets an OSError it can print.

The lists follow Docker's default profile (moby/profiles, default.json) and nsjail's configs,
trimmed to what CPython 2.7 and 3.6-3.13 and their standard library use on x86_64 and aarch64.
Left out of Docker's list, so ENOSYS: kernel AIO (io_setup ...), System V IPC (msg*, sem*,
shm*), POSIX message queues (mq_*), inotify, fanotify_mark, remap_file_pages,
process_mrelease, epoll_*_old. No standard library module calls them (multiprocessing's
semaphores and shared memory are files in /dev/shm), and inotify instances and mqueue bytes
are per-user limits that runs under one host uid would share.
Names are resolved by libseccomp for the machine's own architecture; names that architecture
lacks (open on aarch64, arch_prctl off x86) or that libseccomp does not know are skipped.

No Django here: the module only needs pyseccomp (ctypes over the system's libseccomp2).
"""

import errno
import functools
import os
from collections.abc import Iterable
from typing import Any

# Syscalls a script may make, by what they are for. Grouped for reading; order does not matter.
ALLOW: tuple[str, ...] = (
    # Memory: the allocator, mmap'd files and ctypes' executable callbacks.
    # mmap and memfd_create: _argument_rules (no huge pages); msync: there too.
    # madvise: _argument_rules (no paging out of the host's cache); mlock: in DENY.
    "brk", "munmap", "mremap", "mprotect", "mincore", "munlock", "munlockall",
    "membarrier", "pkey_alloc", "pkey_free", "pkey_mprotect", "mseal", "map_shadow_stack",
    # Files and directories (the sandbox's mounts decide what is there to reach).
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "preadv2",
    "pwritev", "pwritev2", "open", "openat", "openat2", "creat", "close", "close_range",
    "lseek", "dup", "dup2", "dup3", "fcntl", "flock",  # fsync and the like: NO_OP
    "fallocate", "readahead", "truncate", "ftruncate",  # fadvise64: NO_OP
    "stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs",
    "access", "faccessat", "faccessat2", "getdents", "getdents64", "getcwd", "chdir", "fchdir",
    "mkdir", "mkdirat", "rmdir", "rename", "renameat", "renameat2", "link", "linkat",
    "unlink", "unlinkat", "symlink", "symlinkat", "readlink", "readlinkat",
    "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
    "umask", "utime", "utimes", "utimensat", "futimesat",
    "mknod", "mknodat",  # os.mkfifo; device nodes need a capability the sandbox lacks
    "copy_file_range",  # shutil.copy (sendfile and splice are in DENY; shutil falls back)
    "getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr",
    "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
    "getxattrat", "listxattrat", "setxattrat", "removexattrat",  # shutil.copystat
    # Waiting on fds: select, selectors, asyncio; signalfd/timerfd/eventfd via os and ctypes.
    "pipe", "pipe2", "eventfd", "eventfd2", "signalfd", "signalfd4",
    "timerfd_create", "timerfd_settime", "timerfd_gettime",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2",
    "poll", "ppoll", "select", "pselect6",
    # Sockets other than socket()/socketpair() themselves (AF_UNIX only: _argument_rules).
    # The network namespace is empty, so these reach Unix sockets in the sandbox only.
    "bind", "connect", "listen", "accept", "accept4", "getsockname", "getpeername",
    "getsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg",  # setsockopt: _argument_rules
    "sendmmsg", "recvmmsg", "shutdown",
    # Time and timers (reading clocks only; setting them is in DENY).
    "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "time",
    "alarm", "getitimer", "setitimer", "times",
    "timer_create", "timer_settime", "timer_gettime", "timer_getoverrun", "timer_delete",
    # Signals, within the sandbox's own pid namespace.
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack",
    "kill", "tkill", "tgkill", "pause", "restart_syscall",
    "pidfd_open", "pidfd_send_signal",  # os.pidfd_open, asyncio's PidfdChildWatcher
    # Processes and threads (clone itself: _argument_rules; clone3 gets ENOSYS).
    "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid",
    "set_tid_address", "set_robust_list", "get_robust_list", "rseq",
    "futex", "futex_waitv", "futex_wake", "futex_wait", "futex_requeue",
    "arch_prctl", "set_thread_area", "get_thread_area",  # prctl: _argument_rules
    "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam",
    "sched_setparam", "sched_getscheduler", "sched_setscheduler", "sched_get_priority_max",
    "sched_get_priority_min", "sched_rr_get_interval", "sched_getattr", "sched_setattr",
    "getcpu", "getpriority", "setpriority", "ioprio_get", "ioprio_set",
    # Identity, sessions and limits: the sandbox's own (user namespace, no capabilities).
    "getpid", "getppid", "gettid", "getuid", "geteuid", "getgid", "getegid",
    "getresuid", "getresgid", "getgroups", "setuid", "setgid", "setreuid", "setregid",
    "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid", "capget", "capset",
    "getpgid", "setpgid", "getpgrp", "getsid", "setsid",
    "getrlimit", "getrusage", "sysinfo", "uname", "getrandom",  # setrlimit: _argument_rules
    # Rules a process may add on itself only, never remove (seccomp filters: in DENY).
    "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
    "cachestat",
)  # fmt: skip

# Refused with EPERM: known-dangerous, whatever the arguments.
DENY: tuple[str, ...] = (
    # Big, young kernel interfaces with a record of privilege escalations.
    "io_uring_setup", "io_uring_enter", "io_uring_register", "bpf", "perf_event_open",
    "userfaultfd",
    # Keyrings are not a namespace: bubblewrap keeps the caller's session keyring.
    "keyctl", "add_key", "request_key",
    # Other processes' memory and files.
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "kcmp",
    "pidfd_getfd",
    "memfd_secret",  # splits the kernel's direct map, which slows the whole host
    # Mounts and namespaces: the sandbox's layout is bubblewrap's to make, once.
    "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
    "move_mount", "open_tree", "mount_setattr", "unshare", "setns",
    "open_by_handle_at", "name_to_handle_at",  # file handles reach past the mounts
    # The machine itself.
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog",
    "iopl", "ioperm", "lookup_dcookie", "fanotify_init",
    # sync() and syncfs() flush the host's filesystems (the sandbox writes only to tmpfs): a
    # loop of them slowed every fsync on the host (the database's commits) to less than half.
    "sync", "syncfs",
    # The clock. adjtimex's read-only mode cannot be told from its writes (the mode is in a
    # struct seccomp cannot read), and no standard library module reads it.
    "clock_settime", "settimeofday", "adjtimex", "clock_adjtime",
    # Host memory outside the run's limit. Pages of host files that the host has cached cost
    # the run nothing when it locks them (200 MiB locked by a run that peaked at 23 MiB) or
    # holds them in pipes (splice, tee and vmsplice, and sendfile, which splices into a pipe:
    # one-byte splices of host files kept 60 MiB of cache resident, peak 4 MiB). A BPF
    # program (a seccomp filter, prctl's PR_SET_SECCOMP included) is kernel memory the cgroup
    # does not charge, and its compiled image comes out of one host-wide budget
    # (net.core.bpf_jit_limit) that every sandbox's own filter needs: a run that used it up
    # would leave the next sandboxes unable to start. Socket filters: _argument_rules.
    "mlock", "mlock2", "mlockall", "splice", "tee", "vmsplice", "sendfile", "seccomp",
    # NUMA placement of memory.
    "set_mempolicy", "get_mempolicy", "set_mempolicy_home_node", "mbind", "move_pages",
    "migrate_pages",
)  # fmt: skip

# Answered "done" (0) without reaching the kernel. The sandbox's only writable file systems are
# tmpfs, where these do nothing; what they would reach is the host's disk, through a read-only
# descriptor of a file under /usr: fsync() of such a file still makes ext4 flush the disk's
# write cache, and a loop of them cut the host's fsync rate (the database's commits) to a third.
# Refused instead, sqlite3 on /tmp would fail with "disk I/O error". msync: _argument_rules.
# fadvise64 too: it is advice, and POSIX_FADV_DONTNEED on a host file drops the host's cached
# copy (one run emptied the cache of 135,000 files under /usr in 1.5 s); madvise's paging out
# likewise (_argument_rules).
NO_OP: tuple[str, ...] = ("fsync", "fdatasync", "sync_file_range", "fadvise64")

AF_UNIX = 1
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET (Docker's mask).
# CLONE_NEWTIME (0x80) is only meaningful to clone3 and unshare, both refused.
NAMESPACE_FLAGS = 0x7E020000
PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP = 22  # a seccomp filter through prctl: in DENY's reasons
REFUSED_PRCTLS = (PR_SET_PDEATHSIG, PR_SET_SECCOMP)
SOL_SOCKET = 1  # the same number on x86_64 and aarch64 (asm-generic)
# SO_ATTACH_FILTER, SO_ATTACH_BPF, SO_ATTACH_REUSEPORT_CBPF, SO_ATTACH_REUSEPORT_EBPF: a BPF
# program on a socket (see DENY's reasons for BPF programs).
SOCKET_FILTER_OPTIONS = (26, 50, 51, 52)
MADV_COLD, MADV_PAGEOUT = 20, 21  # on a mapping of a host file: the host's cache goes
TIOCSTI = 0x5412  # push a byte into a terminal's input: the caller's shell, if it has one
TIOCLINUX = 0x541C  # the same through the Linux console
TIOCSETD = 0x5423  # a line discipline (n_gsm, n_hdlc: a record of kernel bugs) on a /dev/ptmx pty
REFUSED_IOCTLS = (TIOCSTI, TIOCLINUX, TIOCSETD)
# Docker's: PER_LINUX, PER_LINUX32, UNAME26, PER_LINUX32 | UNAME26, and 0xffffffff (query).
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
LOW_32 = 0xFFFFFFFF
# Huge pages come from the host's hugetlb pool, which the memory cgroup does not charge (v1, and
# v2 without memory_hugetlb_accounting): under a 32 MiB limit a script held the whole 80 MiB
# pool of this machine, reported as 7 MiB. A host that keeps a pool for its database would
# lose it to a run. Transparent huge pages are ordinary, charged memory and stay.
MAP_HUGETLB = 0x40000  # mmap's flags (argument 3)
MAP_LOCKED = 0x2000  # mmap's mlock (see DENY's reasons for mlock)
MFD_HUGETLB = 0x4  # memfd_create's flags (argument 1)
MS_SYNC = 0x4  # msync's flags (argument 2): the fsync of a file's shared mapping (see NO_OP)
# The core-dump limit stays as the launcher set it (1 byte: command.CORE_LIMIT). At 0, a crash
# hands its core to the host's core_pattern helper when that is a pipe (apport, systemd-coredump):
# a process started by the kernel as host root, outside the run's cgroup, for every crash.
RLIMIT_CORE = 4  # the same number on x86_64 and aarch64

# The architectures whose argument positions _argument_rules knows (clone's flags are
# argument 0 on both; on s390 they are argument 1).
SUPPORTED_ARCHES = ("x86_64", "aarch64")


class SeccompUnavailable(RuntimeError):
    """No filter can be built here: pyseccomp or libseccomp is missing, or the architecture
    is not one this policy was written for."""


def _seccomp() -> Any:
    try:
        import pyseccomp
    except ImportError as error:
        raise SeccompUnavailable(f"pyseccomp is not installed: {error}") from None
    except RuntimeError as error:
        raise SeccompUnavailable(f"libseccomp is missing: {error}") from None
    return pyseccomp


def outside(values: Iterable[int], bits: int = 32) -> list[tuple[int, int]]:
    """(mask, value) pairs that match, between them, exactly the `bits`-bit numbers not in
    values, and never two at once: x matches a pair when x & mask == value. seccomp rules
    cannot say "not one of these"; rules built from these pairs can, and as no two overlap,
    no decision depends on the order libseccomp puts them in. About `bits` pairs a value."""
    members = set(values)
    pairs = []

    def split(mask: int, prefix: int, bit: int) -> None:
        if not any(v & mask == prefix for v in members):
            pairs.append((mask, prefix))
        elif bit >= 0:
            split(mask | 1 << bit, prefix, bit - 1)
            split(mask | 1 << bit, prefix | 1 << bit, bit - 1)

    split(0, 0, bits - 1)
    return pairs


def _low_32(seccomp: Any, arg: int, mask: int, value: int) -> Any:
    """arg & mask == value, on the argument's low 32 bits. The kernel reads these arguments as
    32-bit ints: the upper half is ignored, by the kernel and so here (a comparison of all 64
    bits would miss TIOCSTI | 1 << 32)."""
    return seccomp.Arg(arg, seccomp.MASKED_EQ, mask, value)


def _all_but(
    seccomp: Any, name: str, arg: int, refused: tuple[int, ...], action: Any, *also: Any
) -> list[tuple[str, Any, tuple]]:
    """Rules for syscall name: action when argument arg is one of refused, allowed for every
    other value (through outside(), so no two rules match one call). also: comparisons every
    rule carries besides."""
    rules = [(name, action, (*also, _low_32(seccomp, arg, LOW_32, v))) for v in refused]
    for mask, value in outside(refused):
        rules.append((name, seccomp.ALLOW, (*also, _low_32(seccomp, arg, mask, value))))
    return rules


def _argument_rules(seccomp: Any) -> list[tuple[str, int, tuple]]:
    """(syscall, action, comparisons) for the syscalls judged by their arguments. Two rules of
    one syscall with different actions never match the same call. These syscalls must be in
    neither ALLOW nor DENY: a rule without comparisons would override them all."""
    allow, eperm = seccomp.ALLOW, seccomp.ERRNO(errno.EPERM)

    def low_32(arg: int, mask: int, value: int) -> Any:
        return _low_32(seccomp, arg, mask, value)

    rules: list[tuple[str, Any, tuple]] = []
    for name in ("socket", "socketpair"):
        # All 64 bits: a family with any upper bit set is refused, though the kernel would
        # read AF_UNIX in it; no caller sets them.
        rules.append((name, allow, (seccomp.Arg(0, seccomp.EQ, AF_UNIX),)))
        rules.append((name, eperm, (seccomp.Arg(0, seccomp.NE, AF_UNIX),)))
    # Threads, fork and subprocess, without new namespaces. One rule a flag: they overlap
    # each other only, with the same action.
    rules.append(("clone", allow, (low_32(0, NAMESPACE_FLAGS, 0),)))
    for bit in range(32):
        if NAMESPACE_FLAGS & 1 << bit:
            rules.append(("clone", eperm, (low_32(0, 1 << bit, 1 << bit),)))
    # ioctl: Python's terminal and file calls (isatty, termios, FIONREAD, ...). The refused
    # few take 38 comparisons: the filter adds ~0.1 us to an ioctl (FIONREAD, measured),
    # ~0.05 us to other syscalls.
    rules += _all_but(seccomp, "ioctl", 1, REFUSED_IOCTLS, eperm)
    # prctl: all but PR_SET_PDEATHSIG and PR_SET_SECCOMP. Without a cgroup to kill, a run ends
    # when bubblewrap's init dies with its parent; a script that got code into that init (same
    # uid, through /proc/1/mem) could otherwise clear its parent-death signal and outlive the
    # run. PR_SET_SECCOMP: a BPF program, as seccomp() (DENY).
    rules += _all_but(seccomp, "prctl", 0, REFUSED_PRCTLS, eperm)
    # madvise: all but paging out (MADV_COLD, MADV_PAGEOUT), answered "done" as NO_OP.
    rules += _all_but(seccomp, "madvise", 2, (MADV_COLD, MADV_PAGEOUT), seccomp.ERRNO(0))
    rules += _setsockopt_rules(seccomp, SOCKET_FILTER_OPTIONS)
    # Memory: anything but huge pages (MAP_HUGETLB, MFD_HUGETLB) and locked mappings
    # (MAP_LOCKED). Refusals may overlap each other (the same action); the allow rule needs
    # every refused flag clear.
    for name, arg, flags in (
        ("mmap", 3, (MAP_HUGETLB, MAP_LOCKED)),
        ("memfd_create", 1, (MFD_HUGETLB,)),
    ):
        for flag in flags:
            rules.append((name, eperm, (low_32(arg, flag, flag),)))
        rules.append((name, allow, (low_32(arg, sum(flags), 0),)))
    # msync(MS_SYNC) is fsync for a shared mapping: "done", as NO_OP; MS_ASYNC goes through.
    rules.append(("msync", seccomp.ERRNO(0), (low_32(2, MS_SYNC, MS_SYNC),)))
    rules.append(("msync", allow, (low_32(2, MS_SYNC, 0),)))
    # Resource limits, all but RLIMIT_CORE (setrlimit's argument 0; prlimit64's argument 1,
    # with a new value in argument 2: reading it, new = NULL, is fine).
    rules += _all_but(seccomp, "setrlimit", 0, (RLIMIT_CORE,), eperm)
    core = low_32(1, LOW_32, RLIMIT_CORE)
    rules.append(("prlimit64", eperm, (core, seccomp.Arg(2, seccomp.NE, 0))))
    rules.append(("prlimit64", allow, (core, seccomp.Arg(2, seccomp.EQ, 0))))
    for mask, value in outside((RLIMIT_CORE,)):
        rules.append(("prlimit64", allow, (low_32(1, mask, value),)))
    # personality: others switch off address-space randomisation or make data executable.
    for persona in PERSONALITIES:
        rules.append(("personality", allow, (low_32(0, LOW_32, persona),)))
    for mask, value in outside(PERSONALITIES):
        rules.append(("personality", eperm, (low_32(0, mask, value),)))
    return rules


# Without cgroups (the rlimits fallback) a run's limits are per process, so a run is held to
# one process: threads yes (they share the process's rlimits), new processes no; and the
# kernel memory it could hold outside RLIMIT_AS is cut down: no memfds, no bigger pipes, no
# bigger socket buffers (with few descriptors, see command.rlimits).
SINGLE_PROCESS_DENY = ("fork", "vfork", "memfd_create")
F_SETPIPE_SZ = 1031
SOCKET_BUFFER_OPTIONS = (7, 8, 32, 33)  # SO_SNDBUF, SO_RCVBUF, SO_SNDBUFFORCE, SO_RCVBUFFORCE
CLONE_THREAD = 0x10000


def _setsockopt_rules(seccomp: Any, refused: tuple[int, ...]) -> list[tuple[str, Any, tuple]]:
    """setsockopt(fd, SOL_SOCKET, option): the refused options EPERM; every other option at
    SOL_SOCKET, and any option at another level, allowed. No two rules match one call."""
    level = _low_32(seccomp, 1, LOW_32, SOL_SOCKET)
    eperm = seccomp.ERRNO(errno.EPERM)
    rules = _all_but(seccomp, "setsockopt", 2, refused, eperm, level)
    for mask, value in outside((SOL_SOCKET,)):
        rules.append(("setsockopt", seccomp.ALLOW, (_low_32(seccomp, 1, mask, value),)))
    return rules


def _single_process_rules(seccomp: Any) -> list[tuple[str, int, tuple]]:
    """Replacements for the rules of clone, fcntl and setsockopt in the single-process filter."""
    allow, eperm = seccomp.ALLOW, seccomp.ERRNO(errno.EPERM)

    def low_32(arg: int, mask: int, value: int) -> Any:
        return _low_32(seccomp, arg, mask, value)

    rules: list[tuple[str, int, tuple]] = [
        ("clone", allow, (low_32(0, NAMESPACE_FLAGS | CLONE_THREAD, CLONE_THREAD),)),
        ("clone", eperm, (low_32(0, CLONE_THREAD, 0),)),
    ]
    for bit in range(32):
        if NAMESPACE_FLAGS & 1 << bit:
            rules.append(("clone", eperm, (low_32(0, 1 << bit, 1 << bit),)))
    rules += _all_but(seccomp, "fcntl", 1, (F_SETPIPE_SZ,), eperm)
    # setsockopt: the socket filters refused as always, and the buffer sizes too.
    rules += _setsockopt_rules(seccomp, SOCKET_FILTER_OPTIONS + SOCKET_BUFFER_OPTIONS)
    return rules


def compile_filter(arch: int | None = None, single_process: bool = False) -> bytes:
    """The BPF program for arch (a pyseccomp.Arch value; None: this machine's), uncached.
    Tests build the aarch64 program on x86_64 with it. single_process: the rlimits
    fallback's stricter filter (see SINGLE_PROCESS_DENY)."""
    seccomp = _seccomp()
    native = seccomp.system_arch()
    arch = native if arch is None else arch
    if arch not in (seccomp.Arch.X86_64, seccomp.Arch.AARCH64):
        raise SeccompUnavailable(
            f"no seccomp policy for architecture {arch:#x}; written for {SUPPORTED_ARCHES}"
        )

    program = seccomp.SyscallFilter(seccomp.ERRNO(errno.ENOSYS))
    if arch != native:
        program.add_arch(arch)
        program.remove_arch(seccomp.Arch.NATIVE)
    # Any other ABI (x32, i386 through int 0x80, arm32) is refused whole, never killed.
    program.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.ERRNO(errno.EPERM))
    # A binary search over syscall numbers: at most 18 instructions a call on x86_64, where
    # the default chain of comparisons runs up to 316 (135 for the median syscall).
    program.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)

    def known(name: str) -> bool:
        # Negative: libseccomp does not know the name, or it is another architecture's.
        return seccomp.resolve_syscall(arch, name) >= 0

    # Rules take the native number; libseccomp translates it (through its name) for arch.
    def number(name: str) -> int:
        return seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)

    rules = _argument_rules(seccomp)
    allowed, denied = set(ALLOW), set(DENY)
    if single_process:
        replaced = {"clone", "fcntl", "setsockopt"}
        dropped = replaced | set(SINGLE_PROCESS_DENY)  # memfd_create: refused whole
        rules = [r for r in rules if r[0] not in dropped] + _single_process_rules(seccomp)
        allowed -= replaced | set(SINGLE_PROCESS_DENY)
        denied |= set(SINGLE_PROCESS_DENY)
    for name in ALLOW:
        if name in allowed and known(name):
            program.add_rule(seccomp.ALLOW, number(name))
    for name in DENY + SINGLE_PROCESS_DENY:
        if name in denied and known(name):
            program.add_rule(seccomp.ERRNO(errno.EPERM), number(name))
    for name in NO_OP:
        if known(name):
            program.add_rule(seccomp.ERRNO(0), number(name))
    for name, action, comparisons in rules:
        if known(name):
            program.add_rule(action, number(name), *comparisons)

    fd = os.memfd_create("integr8s-seccomp-build", os.MFD_CLOEXEC)
    with open(fd, "w+b") as out:
        program.export_bpf(out)
        out.seek(0)
        return out.read()


@functools.cache
def build_filter(single_process: bool = False) -> bytes:
    """The compiled filter for this machine (sock_filter instructions, as seccomp_export_bpf
    writes them), built on first use and kept for the life of the process.

    Raises SeccompUnavailable when pyseccomp or libseccomp is missing or the architecture is
    neither x86_64 nor aarch64."""
    return compile_filter(single_process=single_process)


def filter_fd() -> int:
    """A new memfd holding build_filter()'s program, at offset 0, for `bwrap --seccomp FD`.

    The fd is close-on-exec and the caller's: hand it to exactly one bubblewrap (Popen's
    pass_fds, which makes it inheritable in that child only), then close it in the parent.
    bubblewrap reads it from its current offset to the end and closes its own copy; the
    offset is shared with every dup, so a second bwrap given the same fd would read nothing.
    Raises SeccompUnavailable as build_filter() does."""
    program = build_filter()
    fd = os.memfd_create("integr8s-seccomp", os.MFD_CLOEXEC)
    try:
        view = memoryview(program)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd

"""The local sandbox's seccomp filter (executions/sandbox/local/seccomp.py).

Two kinds of check: the compiled program run by a small classic-BPF interpreter (both
architectures, any machine), and the program loaded by bubblewrap itself, where every pyenv
interpreter runs a standard-library workout and refused calls must fail with EPERM while the
script goes on.
"""

import errno
import os
import platform
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from executions.sandbox.local import seccomp
from tests.seccomp_probes import NUMBERS

HERE = Path(__file__).parent
BWRAP = shutil.which("bwrap")
PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp"}

ALLOWED = 0x7FFF0000
EPERM = 0x00050000 | errno.EPERM
ENOSYS = 0x00050000 | errno.ENOSYS
DONE = 0x00050000  # SECCOMP_RET_ERRNO with errno 0: the call returns 0, the kernel never sees it
# AUDIT_ARCH_* values: what the kernel puts in seccomp_data.arch.
X86_64, I386, AARCH64, ARM = 0xC000003E, 0x40000003, 0xC00000B7, 0x40000028
ARCHES = {"x86_64": X86_64, "aarch64": AARCH64}


def unavailable() -> str | None:
    try:
        seccomp.build_filter()
    except seccomp.SeccompUnavailable as error:
        return str(error)
    return None


needs_libseccomp = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))


def run_bpf(program: bytes, nr: int, arch: int, *args: int) -> int:
    """What the kernel would decide: the program run over one struct seccomp_data. Knows the
    instructions libseccomp emits (loads of the data, AND, conditional jumps, returns)."""
    values = [a & (2**64 - 1) for a in args] + [0] * (6 - len(args))
    data = struct.pack("<iIQ6Q", nr, arch, 0, *values)
    pc, a = 0, 0
    while True:
        code, jt, jf, k = struct.unpack_from("<HBBI", program, pc * 8)
        pc += 1
        if code == 0x20:  # ld [k]
            a = struct.unpack_from("<I", data, k)[0]
        elif code == 0x54:  # and #k
            a &= k
        elif code == 0x06:  # ret #k
            return k
        elif code == 0x05:  # ja
            pc += k
        elif code in (0x15, 0x25, 0x35, 0x45):  # jeq, jgt, jge, jset #k
            taken = {0x15: a == k, 0x25: a > k, 0x35: a >= k, 0x45: bool(a & k)}[code]
            pc += jt if taken else jf
        else:
            raise AssertionError(f"instruction {code:#x} not known to this interpreter")


@pytest.fixture(scope="module", params=ARCHES)
def arch(request):
    """(name, AUDIT_ARCH value, program) for each architecture the policy supports."""
    import pyseccomp

    if unavailable():
        pytest.skip(unavailable())
    token = {"x86_64": pyseccomp.Arch.X86_64, "aarch64": pyseccomp.Arch.AARCH64}[request.param]
    return request.param, ARCHES[request.param], seccomp.compile_filter(token)


# --- The program itself -------------------------------------------------------------------


@needs_libseccomp
def test_the_program_is_built_once_and_fits_the_kernel_limit():
    program = seccomp.build_filter()
    assert seccomp.build_filter() is program
    assert len(program) % 8 == 0
    assert len(program) // 8 < 4096  # BPF_MAXINSNS


@needs_libseccomp
def test_filter_fd_is_a_rewound_close_on_exec_memfd_with_the_program():
    fd = seccomp.filter_fd()
    try:
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0
        assert os.get_inheritable(fd) is False
        assert os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:")
        with open(os.dup(fd), "rb") as f:
            assert f.read() == seccomp.build_filter()
    finally:
        os.close(fd)


@needs_libseccomp
def test_each_filter_fd_is_a_file_of_its_own():
    first, second = seccomp.filter_fd(), seccomp.filter_fd()
    try:
        assert os.read(first, 1 << 16) == seccomp.build_filter()  # as bubblewrap reads it
        assert os.lseek(second, 0, os.SEEK_CUR) == 0
    finally:
        os.close(first)
        os.close(second)


@needs_libseccomp
def test_an_unsupported_architecture_is_refused_not_guessed():
    import pyseccomp

    with pytest.raises(seccomp.SeccompUnavailable, match="no seccomp policy"):
        seccomp.compile_filter(pyseccomp.Arch.S390X)


@needs_libseccomp
def test_each_syscall_has_one_kind_of_rule():
    import pyseccomp

    judged = {name for name, _, _ in seccomp._argument_rules(pyseccomp)}
    assert judged == {
        "socket", "socketpair", "clone", "ioctl", "personality", "prctl", "mmap",
        "memfd_create", "msync", "setrlimit", "prlimit64", "setsockopt", "madvise",
    }  # fmt: skip
    lists = (set(seccomp.ALLOW), set(seccomp.DENY), set(seccomp.NO_OP))
    assert not lists[0] & lists[1] and not lists[0] & lists[2] and not lists[1] & lists[2]
    assert not judged & (lists[0] | lists[1] | lists[2])
    assert "clone3" not in set(seccomp.ALLOW) | set(seccomp.DENY)  # ENOSYS, the default
    assert len(set(seccomp.ALLOW)) == len(seccomp.ALLOW)


@pytest.mark.parametrize("members", [{0}, {255}, {3, 200}, {0, 8, 17, 18, 255}, set(range(7))])
def test_outside_matches_each_other_number_exactly_once(members):
    pairs = seccomp.outside(members, bits=8)
    for x in range(256):
        matches = sum(1 for mask, value in pairs if x & mask == value)
        assert matches == (0 if x in members else 1), x


@needs_libseccomp
def test_the_test_syscall_numbers_are_the_kernels():
    import pyseccomp

    tokens = {"x86_64": pyseccomp.Arch.X86_64, "aarch64": pyseccomp.Arch.AARCH64}
    for name, numbers in NUMBERS.items():
        for syscall, number in numbers.items():
            assert pyseccomp.resolve_syscall(tokens[name], syscall) == number, (name, syscall)


def test_every_listed_name_gets_its_action(arch):
    import pyseccomp

    name, token, program = arch
    seccomp_arch = {"x86_64": pyseccomp.Arch.X86_64, "aarch64": pyseccomp.Arch.AARCH64}[name]
    checked = 0
    for names, expected in ((seccomp.ALLOW, ALLOWED), (seccomp.DENY, EPERM), (seccomp.NO_OP, DONE)):
        for syscall in names:
            nr = pyseccomp.resolve_syscall(seccomp_arch, syscall)
            if nr >= 0:
                assert run_bpf(program, nr, token) == expected, syscall
                checked += 1
    assert checked > 250


# What glibc and CPython call on aarch64, which has none of open, stat, poll, fork, pipe...
AARCH64_ESSENTIALS = (
    "openat", "newfstatat", "fstat", "ppoll", "pselect6", "epoll_pwait", "epoll_create1",
    "pipe2", "dup3", "mkdirat", "unlinkat", "renameat", "renameat2", "symlinkat", "linkat",
    "readlinkat", "faccessat", "fchmodat", "fchownat", "utimensat", "getdents64", "eventfd2",
    "signalfd4", "prlimit64", "mmap", "wait4", "execve", "rt_sigreturn", "set_tid_address",
    "set_robust_list", "rseq", "futex", "getrandom", "clock_nanosleep", "copy_file_range",
)  # fmt: skip


@needs_libseccomp
def test_what_aarch64_uses_instead_is_allowed():
    import pyseccomp

    program = seccomp.compile_filter(pyseccomp.Arch.AARCH64)
    judged = {name for name, _, _ in seccomp._argument_rules(pyseccomp)}
    for syscall in AARCH64_ESSENTIALS:
        assert syscall in seccomp.ALLOW or syscall in judged, syscall
        nr = pyseccomp.resolve_syscall(pyseccomp.Arch.AARCH64, syscall)
        # Arguments all 0: an ordinary call (mmap without MAP_HUGETLB, say).
        assert run_bpf(program, nr, AARCH64) == ALLOWED, syscall


CLONE_NEWUSER, SIGCHLD, CLONE_THREAD_FLAGS = 0x10000000, 17, 0x3D0F00
TIOCSTI, TIOCLINUX, TIOCSETD, TCGETS, FIONREAD = 0x5412, 0x541C, 0x5423, 0x5401, 0x541B
DECISIONS = [
    # (label, syscall, args, decision)
    ("socket AF_UNIX", "socket", (1, 1, 0), ALLOWED),
    ("socket AF_INET", "socket", (2, 1, 0), EPERM),
    ("socket AF_INET6", "socket", (10, 1, 0), EPERM),
    ("socket AF_NETLINK", "socket", (16, 2, 0), EPERM),
    ("socket AF_VSOCK", "socket", (40, 1, 0), EPERM),
    ("socket AF_UNIX, upper bits set", "socket", (1 | 1 << 32, 1, 0), EPERM),
    ("socketpair AF_UNIX", "socketpair", (1, 1, 0), ALLOWED),
    ("socketpair AF_INET", "socketpair", (2, 1, 0), EPERM),
    ("clone for a thread", "clone", (CLONE_THREAD_FLAGS,), ALLOWED),
    ("clone for fork", "clone", (SIGCHLD,), ALLOWED),
    ("clone NEWUSER", "clone", (CLONE_NEWUSER | SIGCHLD,), EPERM),
    ("clone NEWNS", "clone", (0x20000 | SIGCHLD,), EPERM),
    ("clone NEWNET", "clone", (0x40000000 | SIGCHLD,), EPERM),
    ("clone NEWUSER, upper bits set", "clone", (CLONE_NEWUSER | 1 << 40,), EPERM),
    ("clone3", "clone3", (0, 88), ENOSYS),
    ("ioctl TCGETS", "ioctl", (0, TCGETS), ALLOWED),
    ("ioctl FIONREAD", "ioctl", (0, FIONREAD), ALLOWED),
    ("ioctl TIOCSTI", "ioctl", (0, TIOCSTI), EPERM),
    ("ioctl TIOCSTI, upper bits set", "ioctl", (0, TIOCSTI | 0xFFFFFFFF << 32), EPERM),
    ("ioctl TIOCLINUX", "ioctl", (0, TIOCLINUX), EPERM),
    ("ioctl TIOCSETD", "ioctl", (0, TIOCSETD), EPERM),
    ("ioctl TIOCSTI + 1", "ioctl", (0, TIOCSTI + 1), ALLOWED),
    ("ioctl TIOCLINUX - 1", "ioctl", (0, TIOCLINUX - 1), ALLOWED),
    ("ioctl all ones", "ioctl", (0, 0xFFFFFFFF), ALLOWED),
    ("personality query", "personality", (0xFFFFFFFF,), ALLOWED),
    ("personality PER_LINUX", "personality", (0,), ALLOWED),
    ("personality UNAME26", "personality", (0x20000,), ALLOWED),
    ("personality ADDR_NO_RANDOMIZE", "personality", (0x40000,), EPERM),
    ("personality READ_IMPLIES_EXEC", "personality", (0x400000,), EPERM),
    ("personality 0xfffffffe", "personality", (0xFFFFFFFE,), EPERM),
    ("prctl PR_SET_PDEATHSIG", "prctl", (1, 0), EPERM),
    ("prctl PR_SET_PDEATHSIG, upper bits set", "prctl", (1 | 1 << 32, 0), EPERM),
    ("prctl PR_GET_PDEATHSIG", "prctl", (2, 0), ALLOWED),
    ("prctl PR_SET_NAME", "prctl", (15, 0), ALLOWED),
    ("prctl PR_SET_SECCOMP", "prctl", (22, 2, 4096), EPERM),
    ("seccomp", "seccomp", (1, 0, 4096), EPERM),
    ("setsockopt SO_ATTACH_FILTER", "setsockopt", (3, 1, 26), EPERM),
    ("setsockopt SO_ATTACH_BPF", "setsockopt", (3, 1, 50), EPERM),
    ("setsockopt SO_ATTACH_FILTER, upper bits set", "setsockopt", (3, 1, 26 | 1 << 32), EPERM),
    ("setsockopt SO_SNDBUF", "setsockopt", (3, 1, 7), ALLOWED),
    ("setsockopt another level, option 26", "setsockopt", (3, 6, 26), ALLOWED),
    ("mlock", "mlock", (4096, 4096), EPERM),
    ("mmap MAP_LOCKED", "mmap", (0, 4096, 1, 0x02 | 0x2000, 3, 0), EPERM),
    ("mmap MAP_LOCKED | MAP_HUGETLB", "mmap", (0, 2 << 20, 3, 0x22 | 0x2000 | 0x40000), EPERM),
    ("splice", "splice", (3, 0, 4, 0, 1, 0), EPERM),
    ("sendfile", "sendfile", (4, 3, 0, 1), EPERM),
    ("fadvise64 DONTNEED", "fadvise64", (3, 0, 0, 4), DONE),
    ("madvise MADV_PAGEOUT", "madvise", (4096, 4096, 21), DONE),
    ("madvise MADV_COLD", "madvise", (4096, 4096, 20), DONE),
    ("madvise MADV_DONTNEED", "madvise", (4096, 4096, 4), ALLOWED),
    ("madvise MADV_HUGEPAGE", "madvise", (4096, 4096, 14), ALLOWED),
    ("mmap anonymous", "mmap", (0, 4096, 3, 0x22, -1 & 0xFFFFFFFF, 0), ALLOWED),
    ("mmap a file, shared", "mmap", (0, 4096, 1, 0x01, 3, 0), ALLOWED),
    ("mmap MAP_HUGETLB", "mmap", (0, 2 << 20, 3, 0x22 | 0x40000, -1 & 0xFFFFFFFF, 0), EPERM),
    ("mmap MAP_HUGETLB with a size", "mmap", (0, 2 << 20, 3, 0x22 | 0x40000 | 21 << 26), EPERM),
    ("memfd_create", "memfd_create", (0, 1), ALLOWED),
    ("memfd_create MFD_HUGETLB", "memfd_create", (0, 1 | 4), EPERM),
    ("fsync", "fsync", (3,), DONE),
    ("fdatasync", "fdatasync", (3,), DONE),
    ("msync MS_SYNC", "msync", (4096, 4096, 4), DONE),
    ("msync MS_ASYNC", "msync", (4096, 4096, 1), ALLOWED),
    ("msync MS_INVALIDATE", "msync", (4096, 4096, 2), ALLOWED),
    ("setrlimit RLIMIT_NOFILE", "setrlimit", (7, 4096), ALLOWED),
    ("setrlimit RLIMIT_CORE", "setrlimit", (4, 4096), EPERM),
    ("setrlimit RLIMIT_CORE, upper bits set", "setrlimit", (4 | 1 << 32, 4096), EPERM),
    ("prlimit64 read RLIMIT_CORE", "prlimit64", (0, 4, 0, 4096), ALLOWED),
    ("prlimit64 set RLIMIT_CORE", "prlimit64", (0, 4, 4096, 0), EPERM),
    ("prlimit64 set RLIMIT_CORE of another", "prlimit64", (7, 4, 4096, 8192), EPERM),
    ("prlimit64 set RLIMIT_NOFILE", "prlimit64", (0, 7, 4096, 0), ALLOWED),
    ("sync", "sync", (), EPERM),
    ("syncfs", "syncfs", (3,), EPERM),
    ("io_uring_setup", "io_uring_setup", (1, 0), EPERM),
    ("keyctl", "keyctl", (0, -3 & 0xFFFFFFFF), EPERM),
    ("ptrace", "ptrace", (16, 1), EPERM),
    ("unshare", "unshare", (CLONE_NEWUSER,), EPERM),
    ("getpid", "getpid", (), ALLOWED),
    ("openat", "openat", (), ALLOWED),
]


@pytest.mark.parametrize("label, syscall, args, decision", DECISIONS, ids=[d[0] for d in DECISIONS])
def test_decisions_by_argument(arch, label, syscall, args, decision):
    name, token, program = arch
    nr = NUMBERS[name][syscall]
    assert run_bpf(program, nr, token, *args) == decision


SINGLE_PROCESS_DECISIONS = [
    # Without cgroups (the rlimits fallback) a run is one process with threads.
    ("clone for a thread", "clone", (CLONE_THREAD_FLAGS,), ALLOWED),
    ("clone for fork", "clone", (SIGCHLD,), EPERM),
    ("clone NEWUSER thread", "clone", (CLONE_THREAD_FLAGS | CLONE_NEWUSER,), EPERM),
    ("fork", "fork", (), EPERM),
    ("memfd_create", "memfd_create", (0, 0), EPERM),
    ("memfd_create MFD_HUGETLB", "memfd_create", (0, 4), EPERM),
    ("mmap anonymous", "mmap", (0, 4096, 3, 0x22), ALLOWED),
    ("mmap MAP_HUGETLB", "mmap", (0, 2 << 20, 3, 0x22 | 0x40000), EPERM),
    ("fsync", "fsync", (3,), DONE),
    ("fcntl F_SETPIPE_SZ", "fcntl", (3, 1031, 1 << 20), EPERM),
    ("fcntl F_GETPIPE_SZ", "fcntl", (3, 1032), ALLOWED),
    ("fcntl F_GETFL", "fcntl", (3, 3), ALLOWED),
    ("setsockopt SO_SNDBUF", "setsockopt", (3, 1, 7), EPERM),
    ("setsockopt SO_RCVBUFFORCE", "setsockopt", (3, 1, 33), EPERM),
    ("setsockopt SO_ATTACH_FILTER", "setsockopt", (3, 1, 26), EPERM),
    ("setsockopt SO_REUSEADDR", "setsockopt", (3, 1, 2), ALLOWED),
    ("setsockopt another level, option 7", "setsockopt", (3, 6, 7), ALLOWED),
    ("socket AF_INET still refused", "socket", (2, 1, 0), EPERM),
    ("getpid", "getpid", (), ALLOWED),
]


@pytest.fixture(scope="module", params=ARCHES)
def single_process_arch(request):
    import pyseccomp

    if unavailable():
        pytest.skip(unavailable())
    token = {"x86_64": pyseccomp.Arch.X86_64, "aarch64": pyseccomp.Arch.AARCH64}[request.param]
    return request.param, ARCHES[request.param], seccomp.compile_filter(token, True)


@pytest.mark.parametrize(
    "label, syscall, args, decision",
    SINGLE_PROCESS_DECISIONS,
    ids=[d[0] for d in SINGLE_PROCESS_DECISIONS],
)
def test_the_single_process_filter(single_process_arch, label, syscall, args, decision):
    name, token, program = single_process_arch
    if syscall not in NUMBERS[name]:  # fork exists on x86_64 only
        pytest.skip(f"no {syscall} on {name}")
    assert run_bpf(program, NUMBERS[name][syscall], token, *args) == decision


def test_unknown_numbers_and_foreign_abis(arch):
    name, token, program = arch
    assert run_bpf(program, 1000, token) == ENOSYS  # no such syscall (yet): as an old kernel
    foreign = {X86_64: (I386, AARCH64), AARCH64: (ARM, X86_64)}[token]
    for other in foreign:
        assert run_bpf(program, 20, other) == EPERM  # refused, not killed
    if name == "x86_64":
        assert run_bpf(program, NUMBERS[name]["getpid"] | 0x40000000, token) == EPERM  # x32


# --- The program in bubblewrap ---------------------------------------------------------------


def interpreters() -> list:
    found = sorted(PYENV_VERSIONS.glob("*/bin/python"), key=lambda p: p.parent.parent.name)
    if not found:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no {PYENV_VERSIONS}/*"))]
    return [pytest.param(p, id=p.parent.parent.name) for p in found]


def newest_python3() -> Path | None:
    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in path.parent.parent.name.split(".")[:2])

    found = [p for p in PYENV_VERSIONS.glob("3.*/bin/python") if version(p) >= (3, 8)]
    return max(found, key=version, default=None)


@pytest.fixture(scope="module")
def bwrap():
    """Run code under bubblewrap, with the filter (default) or without, as the brief's
    command line does; skip when bubblewrap, libseccomp or namespaces are missing."""
    if BWRAP is None:
        pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)")
    if unavailable():
        pytest.skip(unavailable())
    probe = subprocess.run(
        [BWRAP, "--unshare-all", "--ro-bind", "/", "/", "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        pytest.skip(f"bubblewrap cannot make a sandbox here: {probe.stderr.strip()}")

    def run(python: Path, code: str, *args: str, filtered: bool = True):
        prefix = str(python.parent.parent)
        old = python.parent.parent.name.startswith("2.")
        flags = ["-u", "-B", "-E", "-s", "-S"] if old else ["-u", "-B", "-I", "-S"]
        fd = seccomp.filter_fd() if filtered else None
        # fmt: off
        command = [
            BWRAP, "--unshare-all", "--die-with-parent",
            "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib",
            "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
            "--ro-bind", prefix, prefix, "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
        ]
        # fmt: on
        if fd is not None:
            command += ["--seccomp", str(fd)]
        command += [str(python), *flags, "-c", code, *args]
        try:
            return subprocess.run(
                command,
                pass_fds=() if fd is None else (fd,),
                capture_output=True,
                text=True,
                timeout=120,
                env=ENV,
            )
        finally:
            if fd is not None:
                os.close(fd)

    return run


@pytest.mark.slow
@pytest.mark.parametrize("python", interpreters())
def test_every_interpreter_runs_the_workout_under_the_filter(bwrap, python):
    result = bwrap(python, (HERE / "seccomp_workout.py").read_text())
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "ok done", result.stdout + result.stderr


def probe(bwrap, *args, filtered=True) -> dict[str, str]:
    python = newest_python3()
    if python is None:
        pytest.skip(f"no Python 3.8+ in {PYENV_VERSIONS}")
    result = bwrap(python, (HERE / "seccomp_probes.py").read_text(), *args, filtered=filtered)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dict(line.rsplit(" ", 1) for line in result.stdout.splitlines())
    assert lines.pop("end") == "ok", result.stdout + result.stderr  # never killed on the way
    return lines


def test_refused_calls_fail_with_eperm_and_the_script_goes_on(bwrap):
    results = probe(bwrap)
    allowed = {
        "clone plain",
        "ioctl FIONREAD",
        "personality query",
        "socket AF_UNIX",
        "socketpair AF_UNIX",
    }
    expected = {name: "ok" if name in allowed else "EPERM" for name in results}
    expected["clone3"] = "ENOSYS"  # so glibc falls back to clone
    if platform.machine() == "x86_64" and results.get("i386 getpid", "").startswith("signal-"):
        expected["i386 getpid"] = results["i386 getpid"]  # a kernel without ia32 emulation
    assert results == expected
    for name in (
        "io_uring_setup", "userfaultfd", "keyctl session keyring", "add_key", "ptrace attach 1",
        "process_vm_readv", "kcmp", "memfd_secret", "bpf", "perf_event_open",
        "unshare NEWUSER", "socket AF_VSOCK", "socket AF_NETLINK", "socket AF_PACKET",
        "socket AF_INET", "socket AF_INET6",
    ):  # fmt: skip
        assert name in results, name


def test_without_the_filter_those_calls_get_further(bwrap):
    """The control: the EPERMs above are the filter's, not the sandbox's own refusals."""
    results = probe(bwrap, "control", filtered=False)
    for name in ("keyctl session keyring", "socket AF_INET", "socket AF_NETLINK"):
        assert results[name] == "ok", name
    for name in ("ioctl TIOCSTI", "ioctl TIOCLINUX", "ioctl TIOCSETD"):
        assert results[name] == "ENOTTY", name
    assert results["clone3"] != "ENOSYS"

"""Calls the seccomp filter refuses, and a few it must let through, made from inside the
sandbox: tests/test_seccomp.py passes this file to `python -c` (3.8+). Each probe prints one
line, "<name> <result>", where result is "ok" or the errno's name (EPERM, ENOSYS, ...), then
the script goes on to the next: a refused call must never kill the process. The last line is
"end". With the argument "control" (no filter) it skips the probes that would change
something outside the sandbox if they worked (a key in the session keyring, a ptrace attach).
"""

import ctypes
import errno
import mmap
import os
import platform
import socket
import sys

# Kernel syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/
# unistd.h for aarch64). tests/test_seccomp.py checks them against libseccomp's tables.
NUMBERS = {
    "x86_64": {
        "io_uring_setup": 425, "userfaultfd": 323, "keyctl": 250, "add_key": 248,
        "request_key": 249, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
        "kcmp": 312, "memfd_secret": 447, "bpf": 321, "perf_event_open": 298, "unshare": 272,
        "setns": 308, "clone": 56, "clone3": 435, "mount": 165, "ioctl": 16,
        "personality": 135, "pidfd_getfd": 438, "open_by_handle_at": 304, "syslog": 103,
        "getpid": 39, "fsopen": 430, "init_module": 175, "socket": 41, "socketpair": 53,
        "openat": 257, "prctl": 157, "sync": 162, "syncfs": 306, "fork": 57,
        "memfd_create": 319, "fcntl": 72, "setsockopt": 54, "mmap": 9, "msync": 26,
        "fsync": 74, "fdatasync": 75, "setrlimit": 160, "prlimit64": 302,
        "seccomp": 317, "mlock": 149, "splice": 275, "sendfile": 40, "fadvise64": 221,
        "madvise": 28,
    },
    "aarch64": {
        "io_uring_setup": 425, "userfaultfd": 282, "keyctl": 219, "add_key": 217,
        "request_key": 218, "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
        "kcmp": 272, "memfd_secret": 447, "bpf": 280, "perf_event_open": 241, "unshare": 97,
        "setns": 268, "clone": 220, "clone3": 435, "mount": 40, "ioctl": 29,
        "personality": 92, "pidfd_getfd": 438, "open_by_handle_at": 265, "syslog": 116,
        "getpid": 172, "fsopen": 430, "init_module": 105, "socket": 198, "socketpair": 199,
        "openat": 56, "prctl": 167, "sync": 81, "syncfs": 267, "memfd_create": 279,
        "fcntl": 25, "setsockopt": 208, "mmap": 222, "msync": 227, "fsync": 82,
        "fdatasync": 83, "setrlimit": 164, "prlimit64": 261,
        "seccomp": 277, "mlock": 228, "splice": 76, "sendfile": 71, "fadvise64": 223,
        "madvise": 233,
    },
}  # fmt: skip

CLONE_FLAGS = {
    "NEWNS": 0x00020000, "NEWCGROUP": 0x02000000, "NEWUTS": 0x04000000,
    "NEWIPC": 0x08000000, "NEWUSER": 0x10000000, "NEWPID": 0x20000000, "NEWNET": 0x40000000,
}  # fmt: skip
SIGCHLD = 17
KEY_SPEC_SESSION_KEYRING = -3
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
TIOCSETD = 0x5423
FIONREAD = 0x541B
ADDR_NO_RANDOMIZE = 0x0040000
# (family, type): types an unprivileged process may open, so only the filter says EPERM.
SOCKET_FAMILIES = {
    "AF_INET": (2, socket.SOCK_STREAM), "AF_INET6": (10, socket.SOCK_STREAM),
    "AF_NETLINK": (16, socket.SOCK_DGRAM), "AF_PACKET": (17, socket.SOCK_DGRAM),
    "AF_VSOCK": (40, socket.SOCK_STREAM), "AF_ALG": (38, socket.SOCK_SEQPACKET),
    "AF_BLUETOOTH": (31, socket.SOCK_STREAM), "AF_KEY": (15, socket.SOCK_RAW),
}  # fmt: skip

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
control = sys.argv[1:] == ["control"]


def report(name, result):
    sys.stdout.write(f"{name} {result}\n")
    sys.stdout.flush()


def syscall(name, *args, number=None):
    """Make the raw call; report ok or the errno's name."""
    nr = NUMBERS[platform.machine()][name] if number is None else number
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    if result == -1:
        return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
    return result


def probe(name, *args, label=None):
    result = syscall(name, *args)
    if isinstance(result, int) and result >= 0:
        result = "ok"
    report(label or name, result)


def probe_clone(label, flags):
    result = syscall("clone", flags | SIGCHLD, 0, 0, 0, 0)
    if result == 0:  # the child: only when the filter let a namespace through
        os._exit(0)
    if isinstance(result, int):
        os.waitpid(result, 0)
        result = "ok"
    report(label, result)


def probe_socket(family_name, family, kind=socket.SOCK_STREAM, pair=False):
    try:
        if pair:
            left, right = socket.socketpair(family, kind)
            left.close()
            right.close()
        else:
            socket.socket(family, kind).close()
        result = "ok"
    except OSError as error:
        result = errno.errorcode.get(error.errno, str(error.errno))
    report(("socketpair " if pair else "socket ") + family_name, result)


def probe_int80():
    """i386's getpid through int 0x80 on x86_64, in a child: a kernel without ia32 emulation
    answers with SIGSEGV."""
    code = b"\xb8\x14\x00\x00\x00\xcd\x80\xc3"  # mov eax, 20; int 0x80; ret
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(code)
        function = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
        os.write(write, str(function()).encode())
        os._exit(0)
    os.close(write)
    answer = os.read(read, 32).decode()
    status = os.waitpid(pid, 0)[1]
    if os.WIFSIGNALED(status):
        result = "signal-" + str(os.WTERMSIG(status))
    elif int(answer) < 0:
        result = errno.errorcode.get(-int(answer), answer)
    else:
        result = "ok"
    report("i386 getpid", result)


def main():
    buffer = ctypes.create_string_buffer(256)
    address = ctypes.addressof(buffer)
    pid = os.getpid()

    probe("io_uring_setup", 1, address)
    probe("userfaultfd", 0)
    probe("keyctl", 0, KEY_SPEC_SESSION_KEYRING, 0, label="keyctl session keyring")
    if not control:
        probe("add_key", address, address, 0, 0, KEY_SPEC_SESSION_KEYRING)
        probe("request_key", address, address, 0, 0)
        probe("ptrace", 16, 1, 0, 0, label="ptrace attach 1")
    probe("process_vm_readv", pid, address, 0, address, 0, 0)
    probe("process_vm_writev", pid, address, 0, address, 0, 0)
    probe("kcmp", pid, pid, 0, 0, 0)
    probe("memfd_secret", 0)
    probe("bpf", 0, address, 0)
    probe("perf_event_open", address, 0, -1, -1, 0)
    probe("pidfd_getfd", -1, 0, 0)
    probe("open_by_handle_at", -1, address, 0)
    probe("syslog", 3, address, 16)
    probe("setns", -1, 0)
    probe("fsopen", address, 0)
    probe("init_module", 0, 0, address)
    probe("mount", address, address, address, 0, 0)
    if not control:
        probe("unshare", CLONE_FLAGS["NEWUSER"], label="unshare NEWUSER")
        for flag, value in CLONE_FLAGS.items():
            probe_clone("clone " + flag, value)
        # The kernel reads only clone's lower 32 bits: the filter must too.
        probe_clone("clone NEWUSER|1<<32", CLONE_FLAGS["NEWUSER"] | 1 << 32)
    probe("clone3", address, 88)
    probe_clone("clone plain", 0)

    read, write = os.pipe()
    probe("ioctl", read, TIOCSTI, address, label="ioctl TIOCSTI")
    probe("ioctl", read, TIOCSTI | 0xFFFFFFFF << 32, address, label="ioctl TIOCSTI|hi")
    probe("ioctl", read, TIOCLINUX, address, label="ioctl TIOCLINUX")
    probe("ioctl", read, TIOCSETD, address, label="ioctl TIOCSETD")
    probe("ioctl", read, FIONREAD, address, label="ioctl FIONREAD")
    os.close(read)
    os.close(write)
    probe("personality", 0xFFFFFFFF, label="personality query")
    probe("personality", ADDR_NO_RANDOMIZE, label="personality ADDR_NO_RANDOMIZE")

    probe_socket("AF_UNIX", socket.AF_UNIX)
    probe_socket("AF_UNIX", socket.AF_UNIX, pair=True)
    for name, (family, kind) in SOCKET_FAMILIES.items():
        probe_socket(name, family, kind)
    probe_socket("AF_INET", socket.AF_INET, pair=True)

    if platform.machine() == "x86_64":
        report("x32 getpid", syscall("getpid", number=39 | 0x40000000))
        probe_int80()
    report("end", "ok")


if __name__ == "__main__":
    main()

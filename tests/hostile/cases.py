"""Untrusted-script attacks, one Case each, reusable against any sandbox backend.

A backend's test module supplies a `run(script, limits, stdin) -> RunResult` callable and a
HostContext, then for each case calls `check_case(case, run, host)`:

    @pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
    def test_hostile(case, host):
        check_case(case, my_run, host)

Scripts print SAFE when the attack failed and BREACH ... when it worked, so the common check
is the same everywhere: SAFE present, BREACH absent. Cases that can only be judged from the
host (is a process still running? did a host process survive?) say so in `host_checks`; a
backend whose sandbox does not share the host (Kubernetes) may skip those.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from executions.examples import VERSION_DEMO
from executions.limits import MIB, Limits
from executions.sandbox.contract import RunResult

# The seed's demo (the editor offers it as an example): match and TypeGuard, both 3.10+.
SEED_DEMO = VERSION_DEMO
SEED_DEMO_OUTPUT = "An integer greater than 10\nA string: hello\nSomething else\n"

SECRET_ENV = "INTEGR8S_HOSTILE_SECRET"
SECRET_VALUE = "hunter2-do-not-leak-7f3a"
DAEMON_TOKEN = "integr8s-daemon-token-5c1e"


@dataclass
class HostContext:
    """What the test process knows about the host, substituted into scripts."""

    victim_pid: int = 0  # a host process the script tries to signal; it must survive
    project_dir: str = "/work/main"
    secret: str = SECRET_VALUE


RunFn = Callable[[str, Limits, str], RunResult]


@dataclass(frozen=True)
class Case:
    name: str
    script: str
    status: tuple[str, ...] = ("completed",)  # any of these
    error_type: tuple[str | None, ...] | None = None  # any of these; None: do not check
    output_has: tuple[str, ...] = ("SAFE",)
    limits: dict = field(default_factory=dict)  # overrides of the base limits
    stdin: str = ""
    check: Callable[[RunResult, HostContext], None] | None = None
    host_checks: bool = False  # needs a look at the host after the run (processes etc.)
    slow: bool = False

    def render(self, host: HostContext) -> str:
        return (
            self.script.replace("VICTIM_PID", str(host.victim_pid))
            .replace("PROJECT_DIR", host.project_dir)
            .replace("DAEMON_TOKEN", DAEMON_TOKEN)
        )


BASE_LIMITS = Limits(wall_time_s=5, cpu_time_s=5, memory_bytes=128 * MIB, processes=64)


def check_case(case: Case, run: RunFn, host: HostContext, base: Limits = BASE_LIMITS):
    """Run one case through `run` and assert the expected outcome; returns the result."""
    result = run(case.render(host), replace(base, **case.limits), case.stdin)
    seen = result.output + result.errors
    where = f"{case.name}: {result.to_dict()!r}"[:3000]
    assert "BREACH" not in seen, where
    assert host.secret not in seen, where
    assert result.status in case.status, where
    if case.error_type is not None:
        assert result.error_type in case.error_type, where
    for text in case.output_has:
        assert text in result.output, where
    if result.status != "completed":
        assert result.reason, where
    if case.check:
        case.check(result, host)
    return result


def _output_capped(result: RunResult, host: HostContext) -> None:
    assert len(result.output.encode()) + len(result.errors.encode()) <= 1 * MIB + 4
    assert result.output_truncated or result.errors_truncated


def _cpu_reason(result: RunResult, host: HostContext) -> None:
    assert "CPU" in result.reason or "longer than" in result.reason


def _names_process_limit(result: RunResult, host: HostContext) -> None:
    if result.status != "completed":
        assert "process" in result.reason, result.reason


def _quick(result: RunResult, host: HostContext) -> None:
    assert result.wall_time_ms is not None and result.wall_time_ms < 3000, result.wall_time_ms


FAILS = "\n".join  # readability helper for multi-line scripts

# Fork until the process limit refuses, then end those children: a limit met by a part of the
# run, which the forged-verdict cases then end in their own ways.
FILL_THE_PROCESS_LIMIT = [
    "import os, signal, sys, time",
    "print('result = 42', flush=True)",
    "kids = []",
    "try:",
    "    while True:",
    "        pid = os.fork()",
    "        if pid == 0:",
    "            time.sleep(30)",
    "            os._exit(0)",
    "        kids.append(pid)",
    "except OSError:",
    "    pass",
    "for k in kids:",
    "    os.kill(k, 9)",
    "    os.waitpid(k, 0)",
]

PACKAGE_SET_WRITES = """
import os
site = "/opt/integr8s/site"
if not os.path.isdir(site):
    print("SAFE (no package set built)")
    raise SystemExit
attempts = [
    lambda: open(site + "/evil.py", "w"),
    lambda: open(site + "/numpy/__init__.py", "a"),
    lambda: os.mkdir(site + "/evil"),
    lambda: os.rename(site + "/numpy", site + "/numpy2"),
    lambda: os.unlink(site + "/numpy/__init__.py"),
    lambda: os.chmod(site + "/numpy", 0o777),
    lambda: os.utime(site + "/numpy/__init__.py"),
]
wrote = []
for i, attempt in enumerate(attempts):
    try:
        attempt()
        wrote.append(i)
    except OSError:
        pass
print("WROTE", wrote) if wrote else print("SAFE")
"""

CASES = [
    Case("package_set_is_read_only", PACKAGE_SET_WRITES),
    Case(
        "fork_bomb",
        FAILS(
            [
                "import os",
                "print('SAFE', flush=True)",
                "while True:",
                "    try:",
                "        os.fork()",
                "    except OSError:",
                "        pass",
            ]
        ),
        # Stopped at the wall clock, after fork had been refused at the process limit: the
        # reason names the limit that held it (it was "ran longer than", a timeout, once).
        status=("failed",),
        error_type=("process_limit",),
        limits={"wall_time_s": 2},
        host_checks=True,
        check=lambda r, h: _names_process_limit(r, h),
    ),
    Case(
        "threads_bomb",
        FAILS(
            [
                "import threading, time",
                "n = 0",
                "try:",
                "    while n < 10000:",
                "        threading.Thread(target=time.sleep, args=(3,), daemon=True).start()",
                "        n += 1",
                "except (RuntimeError, MemoryError) as exc:",
                "    pass",
                "print('SAFE' if n < 1000 else 'BREACH', n)",
                "import os; os._exit(0)",
            ]
        ),
        status=("completed", "failed"),
        error_type=(None, "memory_limit"),
        output_has=(),
    ),
    Case(
        "memory_bomb",
        "a = []\nwhile True:\n    a.append(b'x' * 10_000_000)\n",
        status=("failed",),
        error_type=("memory_limit",),
        output_has=(),
    ),
    Case(
        "prints_then_exceeds_memory",
        "print('still here')\na = []\nwhile True:\n    a.append(b'x' * 10_000_000)\n",
        status=("failed",),
        error_type=("memory_limit",),
        output_has=("still here",),
    ),
    Case(
        "cpu_spin",
        "print('spinning')\nwhile True:\n    pass\n",
        status=("timeout",),
        error_type=("timeout",),
        output_has=("spinning",),
        limits={"cpu_time_s": 1, "wall_time_s": 4},
        check=_cpu_reason,
    ),
    Case(
        "long_sleep",
        "import time\nprint('started')\ntime.sleep(60)\n",
        status=("timeout",),
        error_type=("timeout",),
        output_has=("started",),
        limits={"wall_time_s": 1},
    ),
    Case(
        "stdout_flood",
        "while True:\n    print('x' * 100)\n",
        status=("failed",),
        error_type=("output_limit",),
        output_has=("xxxx",),
        check=_output_capped,
    ),
    Case(
        "stderr_flood",
        "import sys\nwhile True:\n    sys.stderr.write('e' * 100 + '\\n')\n",
        status=("failed",),
        error_type=("output_limit",),
        output_has=(),
        check=_output_capped,
    ),
    Case(
        "huge_single_line",
        "import sys\nsys.stdout.write('y' * (8 * 1024 * 1024))\n",
        status=("failed",),
        error_type=("output_limit",),
        output_has=("yyyy",),
        check=_output_capped,
    ),
    Case(
        "disk_fill_tmp",
        FAILS(
            [
                "import os",
                "total = 0",
                "try:",
                "    for i in range(1000):",
                "        with open(f'/tmp/fill{i}', 'wb') as f:",
                "            for _ in range(64):",
                "                f.write(b'z' * 1024 * 1024)",
                "                total += 1024 * 1024",
                "except OSError as exc:",
                "    print('SAFE', total // 1024 // 1024, 'MiB', type(exc).__name__)",
                "else:",
                "    print('BREACH wrote', total)",
            ]
        ),
        status=("completed", "failed"),
        error_type=(None, "memory_limit"),
        output_has=(),
    ),
    Case(
        "disk_fill_dev_shm",
        FAILS(
            [
                "total = 0",
                "try:",
                "    with open('/dev/shm/fill', 'wb') as f:",
                "        for _ in range(1000):",
                "            f.write(b'z' * 1024 * 1024)",
                "            total += 1024 * 1024",
                "except OSError as exc:",
                "    print('SAFE', total // 1024 // 1024, 'MiB', type(exc).__name__)",
                "else:",
                "    print('BREACH wrote', total)",
            ]
        ),
        status=("completed", "failed"),
        error_type=(None, "memory_limit"),
        output_has=(),
    ),
    Case(
        "network_egress",
        FAILS(
            [
                # No interface but loopback, and the host's own services (PostgreSQL, Redis,
                # the site) out of reach. Only addresses on this machine are tried: a broken
                # sandbox must not send test traffic anywhere else.
                "import socket",
                "try:",
                "    names = sorted(name for _, name in socket.if_nameindex())",
                "    print('SAFE' if names == ['lo'] else 'BREACH', 'interfaces', names)",
                "except PermissionError:  # it needs an AF_INET socket: refused",
                "    print('SAFE no interface list')",
                "for port in (5432, 6379, 8000):",
                "    try:",
                "        socket.create_connection(('127.0.0.1', port), timeout=2).close()",
                "        print('BREACH connected to the host on', port)",
                "    except OSError as exc:",
                "        print('SAFE', port, type(exc).__name__)",
            ]
        ),
        check=lambda r, h: _quick(r, h),
    ),
    Case(
        "dns_lookup",
        FAILS(
            [
                "import socket",
                "try:",
                "    print('BREACH', socket.getaddrinfo('pypi.org', 443))",
                "except OSError as exc:",
                "    print('SAFE', type(exc).__name__)",
            ]
        ),
    ),
    Case(
        "postgres_tcp",
        FAILS(
            [
                "import socket",
                "for port in (5432, 6379):",
                "    try:",
                "        socket.create_connection(('127.0.0.1', port), timeout=2).close()",
                "        print('BREACH connected', port)",
                "    except OSError as exc:",
                "        print('SAFE', port, type(exc).__name__)",
            ]
        ),
    ),
    Case(
        "postgres_unix_socket",
        FAILS(
            [
                "import socket",
                "for path in ('/var/run/postgresql/.s.PGSQL.5432',",
                "             '/run/postgresql/.s.PGSQL.5432'):",
                "    s = socket.socket(socket.AF_UNIX)",
                "    try:",
                "        s.connect(path)",
                "        print('BREACH connected', path)",
                "    except OSError as exc:",
                "        print('SAFE', path, type(exc).__name__)",
            ]
        ),
    ),
    Case(
        "read_project_files",
        FAILS(
            [
                "import os",
                "for path in ['PROJECT_DIR/integr8s/settings.py', 'PROJECT_DIR/db.sqlite3',",
                "             'PROJECT_DIR/test-db.sqlite3', 'PROJECT_DIR/manage.py',",
                "             'PROJECT_DIR']:",
                "    try:",
                "        with open(path, 'rb') as f:",
                "            print('BREACH read', path, f.read(40))",
                "    except OSError as exc:",
                "        print('SAFE', path, type(exc).__name__)",
                "print('SAFE' if not os.path.exists('PROJECT_DIR') else 'BREACH project visible')",
            ]
        ),
    ),
    Case(
        "worker_environment",
        FAILS(
            [
                "import os",
                "print(dict(os.environ))",
                "for pid in [p for p in os.listdir('/proc') if p.isdigit()]:",
                "    for name in ('environ', 'cmdline'):",
                "        try:",
                "            print(pid, name, open(f'/proc/{pid}/{name}', 'rb').read())",
                "        except OSError as exc:",
                "            print(pid, name, type(exc).__name__)",
                "print('SAFE')",
            ]
        ),
    ),
    Case(
        "host_proc_1_environ",
        FAILS(
            [
                "for path in ('/proc/1/environ', '/proc/1/root/etc/hostname', '/proc/1/cwd'):",
                "    try:",
                "        print(path, open(path, 'rb').read()[:200])",
                "    except OSError as exc:",
                "        print(path, type(exc).__name__)",
                "print('SAFE')",
            ]
        ),
    ),
    Case(
        "signal_host_processes",
        FAILS(
            [
                "import os, signal",
                "for pid in (VICTIM_PID, os.getppid(), 1):",
                "    try:",
                "        os.kill(pid, signal.SIGKILL)",
                "        print('sent', pid)",
                "    except OSError as exc:",
                "        print('refused', pid, type(exc).__name__)",
                "try:",
                "    os.kill(VICTIM_PID, 0)",
                "    print('victim pid exists here', VICTIM_PID)",
                "except OSError:",
                "    print('SAFE')",
            ]
        ),
        host_checks=True,
    ),
    Case(
        "write_outside_tmp",
        FAILS(
            [
                "import os, sys",
                "targets = ['/evil', '/usr/evil', '/scripts/script.py', '/scripts/evil',",
                "           '/home/evil',",
                "           '/etc/evil', '/proc/sys/kernel/hostname', '/proc/sysrq-trigger',",
                "           os.path.join(sys.prefix, 'evil.py'), '/dev/evil']",
                "for path in targets:",
                "    try:",
                "        with open(path, 'w') as f:",
                "            f.write('x')",
                "        print('BREACH wrote', path)",
                "    except OSError as exc:",
                "        print('SAFE', path, type(exc).__name__)",
                "with open('/tmp/ok', 'w') as f:",
                "    f.write('fine')",
                "print('tmp ok')",
            ]
        ),
        output_has=("SAFE", "tmp ok"),
    ),
    Case(
        "daemon_outlives_run",
        FAILS(
            [
                "import os, sys, time",
                "if os.fork() == 0:",
                "    os.setsid()",
                "    if os.fork() == 0:",
                "        os.execv(sys.executable, [sys.executable, '-c',",
                "                 'import time; time.sleep(30)', 'DAEMON_TOKEN'])",
                "    os._exit(0)",
                "time.sleep(0.3)",
                "print('SAFE parent leaving')",
            ]
        ),
        host_checks=True,
        check=_quick,
    ),
    Case(
        "read_etc_shadow",
        FAILS(
            [
                "for path in ('/etc/shadow', '/etc/passwd', '/etc/hostname', '/root/.bashrc',",
                "             '/etc/postgresql', '/var/run/postgresql'):",
                "    try:",
                "        print('BREACH', path, open(path).read()[:80])",
                "    except OSError as exc:",
                "        print('SAFE', path, type(exc).__name__)",
            ]
        ),
    ),
    Case(
        "ptrace_host",
        FAILS(
            [
                "import ctypes, os",
                "libc = ctypes.CDLL(None, use_errno=True)",
                "PTRACE_ATTACH = 16",
                "rc = libc.ptrace(PTRACE_ATTACH, VICTIM_PID, 0, 0)",
                "print('SAFE' if rc == -1 else 'BREACH attached', os.strerror(ctypes.get_errno()))",
            ]
        ),
        host_checks=True,
    ),
    Case(
        "mount_and_namespaces",
        FAILS(
            [
                "import ctypes, os",
                "libc = ctypes.CDLL(None, use_errno=True)",
                "rc = libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)",
                "print('SAFE mount' if rc == -1 else 'BREACH mounted')",
                "for flag in ('CLONE_NEWUSER', 'CLONE_NEWNS', 'CLONE_NEWNET'):",
                "    rc = libc.unshare(getattr(os, flag, 0) or {'CLONE_NEWUSER': 0x10000000,",
                "                      'CLONE_NEWNS': 0x20000, 'CLONE_NEWNET': 0x40000000}[flag])",
                "    print(('SAFE ' if rc == -1 else 'BREACH unshared ') + flag)",
            ]
        ),
    ),
    Case(
        "setuid_root",
        FAILS(
            [
                "import os",
                "print('uid', os.getuid(), os.geteuid(), 'gid', os.getgid())",
                "for call, arg in ((os.setuid, 0), (os.setgid, 0), (os.seteuid, 0)):",
                "    try:",
                "        call(arg)",
                "        print('BREACH', call.__name__)",
                "    except OSError as exc:",
                "        print('SAFE', call.__name__, type(exc).__name__)",
                "try:",
                "    os.chown('/tmp', 0, 0)",
                "    print('chown worked (own tmpfs)')",
                "except OSError as exc:",
                "    print('chown refused', type(exc).__name__)",
            ]
        ),
        output_has=("SAFE", "uid 65534 65534"),
    ),
    Case(
        "dev_access",
        FAILS(
            [
                "import os",
                "print(sorted(os.listdir('/dev')))",
                "for path in ('/dev/sda', '/dev/vda', '/dev/mem', '/dev/kmsg', '/dev/port',",
                "             '/proc/kmsg',",
                "             '/proc/kcore', '/sys/fs/cgroup', '/sys/kernel'):",
                "    try:",
                "        open(path, 'rb').read(16)",
                "        print('BREACH read', path)",
                "    except OSError as exc:",
                "        print('SAFE', path, type(exc).__name__)",
            ]
        ),
    ),
    Case(
        "writable_proc_files",
        FAILS(
            [
                "import os",
                "opened = []",
                "for top, dirs, files in os.walk('/proc'):",
                "    if top == '/proc':",
                "        skip = ('self', 'thread-self')",
                "        dirs[:] = [d for d in dirs if not d.isdigit() and d not in skip]",
                "    for name in files:",
                "        path = os.path.join(top, name)",
                "        try:",
                "            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))",
                "            opened.append(path)",
                "        except OSError:",
                "            pass",
                "print('BREACH writable ' + ' '.join(opened) if opened else 'SAFE')",
            ]
        ),
    ),
    Case(
        "recursion_crash",
        "import sys\nsys.setrecursionlimit(10**6)\ndef f(n):\n    return f(n + 1) + 1\nf(0)\n",
        status=("completed", "failed"),
        error_type=("script_error", "memory_limit"),
        output_has=(),
    ),
    Case(
        "fork_exec_shell",
        FAILS(
            [
                "import os, subprocess",
                "r = subprocess.run(['/bin/sh', '-c', 'id; ls / ; cat /etc/shadow; echo x > /x; "
                "ls /root; kill -9 VICTIM_PID'], capture_output=True, text=True)",
                "print(r.stdout)",
                "print(r.stderr)",
                "print('SAFE' if 'uid=65534' in r.stdout else 'BREACH ' + r.stdout)",
            ]
        ),
        host_checks=True,
    ),
    Case(
        "inherited_file_descriptors",
        FAILS(
            [
                "import os",
                "extra = []",
                "for fd in range(3, 1024):",
                "    try:",
                "        os.fstat(fd)",
                "        extra.append((fd, os.readlink(f'/proc/self/fd/{fd}')))",
                "    except OSError:",
                "        pass",
                "print('SAFE' if not extra else f'BREACH open fds {extra}')",
            ]
        ),
    ),
    Case(
        # Files the kernel gives to host root alone (0400): a sandbox that is host root under
        # its user namespace reads them (kernel memory layout, timers ...); one that is not,
        # cannot. (Its own /proc/self/uid_map cannot tell: bubblewrap's --disable-userns nests
        # the sandbox's namespace, so the map shown inside is relative to the middle one.)
        "root_only_proc_files",
        FAILS(
            [
                "import os",
                "read = []",
                "for name in ('vmallocinfo', 'slabinfo', 'pagetypeinfo', 'timer_list',",
                "             'kpageflags', 'kpagecount', 'sched_debug', 'zoneinfo'):",
                "    path = '/proc/' + name",
                "    try:",
                "        mode = os.stat(path).st_mode",
                "    except OSError:",
                "        continue",
                "    if mode & 0o044:",
                "        continue  # readable by all on this kernel: proves nothing",
                "    try:",
                "        with open(path, 'rb') as f:",
                "            f.read(64)",
                "        read.append(path)",
                "    except OSError as exc:",
                "        print('refused', path, type(exc).__name__)",
                "print('BREACH read root-only ' + ' '.join(read) if read else 'SAFE')",
            ]
        ),
    ),
    Case(
        "site_packages_hidden",
        FAILS(
            [
                "import os, sys",
                "for name in ('pip', 'setuptools', '_sandboxing_egress_ca'):",
                "    try:",
                "        __import__(name)",
                "        print('BREACH imported', name)",
                "    except ImportError:",
                "        print('SAFE no', name)",
                "for path in sys.path:",
                "    if path.endswith(('site-packages', 'dist-packages')) and os.path.isdir(path):",
                "        left = os.listdir(path)",
                "        print(('BREACH site dir' if left else 'SAFE empty'), path, left)",
            ]
        ),
    ),
    Case(
        "stdin_is_private",
        "import sys\ndata = sys.stdin.read()\nprint('SAFE', len(data), repr(data[:20]))\n",
        stdin="only this\n",
        output_has=("SAFE 10 'only this\\n'",),
    ),
    # --- the kernel boundary: memory outside the limit, interfaces no script needs -----------
    Case(
        "inet_socket_buffers_refused",
        FAILS(
            [
                # cgroup v1 does not charge TCP/UDP buffers to the run: on loopback, queued
                # datagrams held hundreds of MiB outside a 128 MiB limit. Sockets other than
                # AF_UNIX are refused.
                "import socket",
                "for family in (socket.AF_INET, socket.AF_INET6):",
                "    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):",
                "        try:",
                "            socket.socket(family, kind).close()",
                "            print('BREACH opened', family, kind)",
                "        except PermissionError:",
                "            print('SAFE refused', family, kind)",
            ]
        ),
        check=lambda r, h: _no_breach_lines(r, h, 4),
    ),
    Case(
        "socket_families_refused",
        FAILS(
            [
                "import socket",
                "families = {'AF_NETLINK': 16, 'AF_PACKET': 17, 'AF_VSOCK': 40, 'AF_ALG': 38,",
                "            'AF_KEY': 15, 'AF_BLUETOOTH': 31, 'AF_XDP': 44, 'AF_TIPC': 30}",
                "for name, family in families.items():",
                "    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM, socket.SOCK_RAW):",
                "        try:",
                "            socket.socket(family, kind).close()",
                "            print('BREACH opened', name, kind)",
                "        except PermissionError:",
                "            pass",
                "        except OSError as exc:",
                "            print('BREACH not refused by the platform', name, kind, exc)",
                "print('SAFE')",
            ]
        ),
    ),
    Case(
        "unix_socket_buffers_are_charged",
        FAILS(
            [
                # AF_UNIX is allowed because its buffers count against the run's memory.
                "import socket",
                "queued, pairs = 0, []",
                "try:",
                "    for _ in range(100):",
                "        a, b = socket.socketpair()",
                "        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)",
                "        a.setblocking(False)",
                "        pairs.append((a, b))",
                "        try:",
                "            while True:",
                "                queued += a.send(b'x' * 65536)",
                "        except BlockingIOError:",
                "            pass",
                "except OSError as exc:",
                "    print('stopped', type(exc).__name__)",
                "print('SAFE queued', queued, flush=True)",
            ]
        ),
        status=("completed", "failed"),
        error_type=(None, "memory_limit"),
        output_has=(),
        check=lambda r, h: _queued_is_charged(r, h),
    ),
    Case(
        "pipe_buffers_are_charged",
        FAILS(
            [
                "import fcntl, os",
                "queued, pipes = 0, []",
                "try:",
                "    for _ in range(120):",
                "        r, w = os.pipe()",
                "        fcntl.fcntl(w, 1031, 1 << 20)  # F_SETPIPE_SZ",
                "        os.set_blocking(w, False)",
                "        pipes.append((r, w))",
                "        try:",
                "            while True:",
                "                queued += os.write(w, b'x' * 65536)",
                "        except BlockingIOError:",
                "            pass",
                "except OSError as exc:",
                "    print('stopped', type(exc).__name__)",
                "print('SAFE queued', queued, flush=True)",
            ]
        ),
        status=("completed", "failed"),
        error_type=(None, "memory_limit"),
        output_has=(),
        check=lambda r, h: _queued_is_charged(r, h),
    ),
    Case(
        "kernel_interfaces_refused",
        FAILS(
            [
                # Each is called the way an exploit would start; the platform refuses each
                # with EPERM (anything else means the call reached the kernel's code).
                "import ctypes, errno, platform",
                "libc = ctypes.CDLL(None, use_errno=True)",
                "NR = {",
                "    'x86_64': dict(io_uring_setup=425, userfaultfd=323, keyctl=250, add_key=248,",
                "                   request_key=249, ptrace=101, process_vm_readv=310, kcmp=312,",
                "                   memfd_secret=447, bpf=321, perf_event_open=298, unshare=272,",
                "                   setns=308, mount=165, pidfd_getfd=438, open_by_handle_at=304,",
                "                   init_module=175, kexec_load=246, fsopen=430),",
                "    'aarch64': dict(io_uring_setup=425, userfaultfd=282, keyctl=219, add_key=217,",
                "                   request_key=218, ptrace=117, process_vm_readv=270, kcmp=272,",
                "                   memfd_secret=447, bpf=280, perf_event_open=241, unshare=97,",
                "                   setns=268, mount=40, pidfd_getfd=438, open_by_handle_at=265,",
                "                   init_module=105, kexec_load=104, fsopen=430),",
                "}[platform.machine()]",
                "buf = ctypes.create_string_buffer(256)",
                "calls = {",
                "    'io_uring_setup': (8, buf), 'userfaultfd': (0,),",
                "    'keyctl': (0, -3, 0),  # KEYCTL_GET_KEYRING_ID of the session keyring",
                "    'add_key': (b'user', b'integr8s', b'x', 1, -3),",
                "    'request_key': (b'user', b'k', 0, 0),",
                "    'ptrace': (16, 1, 0, 0),  # PTRACE_ATTACH to the sandbox's own init",
                "    'process_vm_readv': (1, 0, 0, 0, 0, 0), 'kcmp': (1, 1, 0, 0, 0),",
                "    'memfd_secret': (0,), 'bpf': (0, buf, 48),",
                "    'perf_event_open': (buf, 0, -1, -1, 0), 'unshare': (0x10000000,),",
                "    'setns': (0, 0), 'mount': (b'none', b'/tmp', b'tmpfs', 0, 0),",
                "    'pidfd_getfd': (0, 0, 0), 'open_by_handle_at': (0, buf, 0),",
                "    'init_module': (0, 0, 0), 'kexec_load': (0, 0, 0, 0),",
                "    'fsopen': (b'tmpfs', 0),",
                "}",
                "for name, args in calls.items():",
                "    ctypes.set_errno(0)",
                "    ret = libc.syscall(NR[name], *args)",
                "    err = ctypes.get_errno()",
                "    if ret == -1 and err == errno.EPERM:",
                "        print('SAFE', name)",
                "    else:",
                "        print('BREACH', name, ret, errno.errorcode.get(err, err))",
            ]
        ),
        output_has=("SAFE io_uring_setup", "SAFE keyctl", "SAFE ptrace", "SAFE fsopen"),
    ),
    Case(
        "ptrace_sandbox_init",
        FAILS(
            [
                # The way out of an rlimits-only run: get code into bubblewrap's init (same
                # uid: ptrace, or /proc/1/mem), clear its parent-death signal, outlive the run.
                # ptrace is refused; init runs under the same filter as the script, and that
                # filter refuses PR_SET_PDEATHSIG to both.
                "import ctypes, errno",
                "libc = ctypes.CDLL(None, use_errno=True)",
                "for request in (16, 0x4206):  # PTRACE_ATTACH, PTRACE_SEIZE",
                "    ret = libc.ptrace(request, 1, 0, 0)",
                "    err = ctypes.get_errno()",
                "    print('SAFE' if ret == -1 and err == errno.EPERM else 'BREACH', request, err)",
                "ret = libc.prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG, none",
                "err = ctypes.get_errno()",
                "print('SAFE' if ret == -1 and err == errno.EPERM else 'BREACH', 'pdeathsig', err)",
                "status = dict(line.split(':', 1) for line in open('/proc/1/status'))",
                "print('SAFE' if status['Seccomp'].strip() == '2' else 'BREACH init unfiltered')",
            ]
        ),
        check=lambda r, h: _no_breach_lines(r, h, 4),
    ),
    Case(
        "children_share_one_cpu_limit",
        FAILS(
            [
                # Ten children each just under the 1 s limit used 7 s: the limit is the run's.
                "import os, time",
                "print('SAFE forking', flush=True)",
                "for _ in range(10):",
                "    if os.fork() == 0:",
                "        while time.process_time() < 0.9:",
                "            pass",
                "        os._exit(0)",
                "for _ in range(10):",
                "    os.wait()",
                "print('BREACH all ten finished')",
            ]
        ),
        status=("timeout",),
        error_type=("timeout",),
        limits={"cpu_time_s": 1, "wall_time_s": 15},
        check=lambda r, h: _cpu_within(r, h, 1000),
    ),
    # --- results a script cannot forge ----------------------------------------------------
    Case(
        "forged_sandbox_error",
        "import sys\nsys.stderr.write('bwrap: Can\\'t mount proc\\nERROR forged log line\\n')\n"
        "sys.exit(1)\n",
        error_type=("script_error",),
        output_has=(),
    ),
    Case(
        "forged_launcher_error",
        "import sys\nsys.stderr.write('sandbox: cannot join the cgroup\\n')\nsys.exit(125)\n",
        error_type=("script_error",),
        output_has=(),
    ),
    Case(
        "forged_nsenter_error",
        "import sys\nsys.stderr.write('nsenter: cannot open /proc/1/ns/mnt\\n')\nsys.exit(127)\n",
        error_type=("script_error",),
        output_has=(),
    ),
    Case(
        "forged_memory_error",
        "import sys\nsys.stderr.write('Traceback...\\nMemoryError\\n')\nsys.exit(1)\n",
        error_type=("script_error",),
        output_has=(),
    ),
    Case(
        "forged_cpu_exit_code",
        "import sys\nsys.exit(152)\n",
        error_type=("script_error",),
        output_has=(),
        check=lambda r, h: _not_a_limit(r, h),
    ),
    Case(
        "forged_sigxcpu",
        "import os, signal\nos.kill(os.getpid(), signal.SIGXCPU)\n",
        error_type=("script_error",),
        output_has=(),
        check=lambda r, h: _not_a_limit(r, h),
    ),
    Case(
        "forged_oom_kill",
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
        error_type=("script_error",),
        output_has=(),
        check=lambda r, h: _not_a_limit(r, h),
    ),
    # --- what is stored -------------------------------------------------------------------
    Case(
        # Both streams at once, from two threads, in characters of 1 to 4 bytes and invalid
        # ones (3 bytes once stored): the cap holds on the two together, as stored.
        "both_streams_flood_at_once",
        FAILS(
            [
                "import os, threading",
                "chunk = ('a\\u00e9\\u20ac\\U0001f600'.encode() + b'\\xff\\x00') * 4096",
                "def flood(fd):",
                "    while True:",
                "        os.write(fd, chunk)",
                "threading.Thread(target=flood, args=(2,), daemon=True).start()",
                "flood(1)",
            ]
        ),
        status=("failed",),
        error_type=("output_limit",),
        output_has=(),
        check=lambda r, h: _output_capped(r, h),
    ),
    Case(
        "invalid_utf8_flood",
        "import sys\nsys.stdout.buffer.write(b'\\xff' * (1024 * 1024))\nsys.stdout.flush()\n",
        status=("failed",),
        error_type=("output_limit",),
        output_has=(),
        check=lambda r, h: _output_capped(r, h),
    ),
    Case(
        "nul_bytes_are_kept_visible",
        "import sys\nsys.stdout.write('SAFE a\\x00b\\n')\nsys.stderr.write('c\\x00d\\n')\n",
        output_has=("SAFE a\u2400b",),
        check=lambda r, h: _no_nul(r, h),
    ),
    Case(
        "tmp_filled",
        FAILS(
            [
                # A full /tmp showed as a generic script error: the reason names the limit.
                "print('SAFE writing', flush=True)",
                "with open('/tmp/big', 'wb') as f:",
                "    while True:",
                "        f.write(b'x' * 65536)",
            ]
        ),
        error_type=("script_error",),
        limits={"tmp_bytes": 4 * MIB},
        check=lambda r, h: _names_tmp(r, h),
    ),
    # --- found by a red-team pass against the first version of this sandbox ----------------
    # HIGH (rlimits fallback only). Memory outside the memory limit: RLIMIT_AS does not count
    # memfd (shmem) pages that are not mapped, and RLIMIT_FSIZE caps each memfd at tmp_bytes
    # only, so one process holds OPEN_FILES (256) x 16 MiB = 4 GiB, and processes+2 of them
    # ~270 GiB: the host runs out of memory. Measured: 320 MiB held under a 64 MiB limit,
    # status completed, peak_memory_kb 52 MiB (a false report too). Pipes and AF_UNIX socket
    # buffers escape RLIMIT_AS the same way.
    Case(
        "rlimits_memfd_outside_memory_limit",
        FAILS(
            [
                "import os",
                "held, total = [], 0",
                "chunk = b'm' * (1 << 20)",
                "try:",
                "    for i in range(20):",
                "        fd = os.memfd_create(f'hold{i}')",
                "        for _ in range(16):",
                "            os.write(fd, chunk)",
                "            total += len(chunk)",
                "        held.append(fd)",
                "except OSError as exc:",
                "    print('stopped', exc)",
                "print('BREACH' if total > (64 << 20) else 'SAFE', 'held', total >> 20, 'MiB',",
                "      flush=True)",
            ]
        ),
        status=("failed", "completed"),
        error_type=("memory_limit", "script_error", None),
        output_has=(),
        limits={"memory_bytes": 64 * MIB},
    ),
    # MEDIUM-HIGH (full sandbox). A host-wide kernel resource with no per-run limit: Unix 98
    # ptys. bubblewrap's --dev gives each sandbox a devpts instance with ptmxmode=666, and
    # every instance but the host's own draws on kernel.pty.max - kernel.pty.reserve (4096 -
    # 1024 = 3072 here). 16 children x 252 fds take all 3072: while the run lives, every other
    # sandbox (and every podman/docker container, `docker exec -t`, other bwrap users) gets
    # ENOSPC from os.openpty(). Measured from a concurrent run: "openpty refused: [Errno 28]".
    # It also holds host memory outside the memory limit: 3071 ptys took ~75 MiB of vmalloc
    # (n_tty buffers, not charged) and ~290 MiB of MemFree while the run's cgroup was
    # charged 20 MiB under a 32 MiB limit.
    Case(
        "pty_exhaustion_is_host_wide",
        FAILS(
            [
                "import os, time",
                "r, w = os.pipe()",
                "for i in range(16):",
                "    if os.fork() == 0:",
                "        held, err = [], 0",
                "        while True:",
                "            try:",
                "                held.append(os.open('/dev/ptmx', os.O_RDWR | os.O_NOCTTY))",
                "            except OSError as exc:",
                "                err = exc.errno",
                "                break",
                "        os.write(w, f'{len(held)}:{err} '.encode())",
                "        time.sleep(1.5)",
                "        os._exit(0)",
                "os.close(w)",
                "time.sleep(1)",
                "report = os.read(r, 4096).decode().split()",
                "total = sum(int(x.split(':')[0]) for x in report)",
                "if any(x.endswith(':28') for x in report):  # ENOSPC: the host's pty limit",
                "    print('BREACH exhausted the host-wide pty pool with', total, 'ptys')",
                "else:",
                "    print('SAFE', total, 'ptys', report[:3])",
                "for _ in range(16):",
                "    os.wait()",
            ]
        ),
        status=("completed", "failed"),
        output_has=("SAFE",),
        limits={"wall_time_s": 6},
    ),
    # MEDIUM (rlimits fallback only). The run-wide CPU limit is measured by TreeCpu, which sums
    # the live tree plus cutime; children the kernel reaps itself (SIGCHLD ignored) never reach
    # any cutime, and each sample only sees the child alive at that moment. Measured: ~5.4 s
    # of CPU burned under a 1 s CPU limit, status completed, cpu_time_ms reported 370 (false).
    # No cpu quota either in this mode: 64 such children use every core for the wall time.
    Case(
        "rlimits_cpu_limit_escaped_by_autoreaped_children",
        FAILS(
            [
                "import os, signal, time",
                "signal.signal(signal.SIGCHLD, signal.SIG_IGN)",
                "print('SAFE forking', flush=True)",
                "start, n = time.monotonic(), 0",
                "while time.monotonic() - start < 5.5:",
                "    pid = os.fork()",
                "    if pid == 0:",
                "        s = time.process_time()",
                "        while time.process_time() - s < 0.3:",
                "            pass",
                "        os._exit(0)",
                "    while True:",
                "        try:",
                "            os.kill(pid, 0)",
                "            time.sleep(0.01)",
                "        except ProcessLookupError:",
                "            break",
                "    n += 1",
                "print('BREACH burned about', round(n * 0.3, 1), 's of CPU under a 1 s limit')",
            ]
        ),
        # With cgroups: stopped at the run's CPU limit. Without (one process): fork refused.
        status=("timeout", "completed"),
        error_type=("timeout", "script_error"),
        limits={"cpu_time_s": 1, "wall_time_s": 8},
    ),
    # LOW-MEDIUM (full sandbox). sync() and syncfs() are allowed: they flush every filesystem of
    # the host (the sandbox has no disk of its own to flush, only tmpfs). A loop of sync()
    # calls cut the host's fsync rate from 6923 to 2904 per 1.5 s (PostgreSQL commits wait
    # on fsync): one run slows the database and every other tenant of the disk.
    Case(
        "sync_reaches_host_filesystems",
        FAILS(
            [
                "import ctypes, errno, os, platform",
                "libc = ctypes.CDLL(None, use_errno=True)",
                "SYNC = {'x86_64': 162, 'aarch64': 81}[platform.machine()]",
                "SYNCFS = {'x86_64': 306, 'aarch64': 267}[platform.machine()]",
                "fd = os.open('/usr', os.O_RDONLY)",
                "for name, args in (('sync', (SYNC,)), ('syncfs', (SYNCFS, fd))):",
                "    ctypes.set_errno(0)",
                "    ret = libc.syscall(*args)",
                "    err = ctypes.get_errno()",
                "    if ret == -1 and err == errno.EPERM:",
                "        print('SAFE', name)",
                "    else:",
                "        print('BREACH', name, 'flushed the host filesystems', ret, err)",
            ]
        ),
    ),
    # LOW (full sandbox). A false verdict: a run that ended itself (exit 1) while inside every
    # limit is reported failed/memory_limit, "Stopped: used more than 128 MiB of memory.",
    # because a throwaway child was OOM-killed. The script chooses the platform's verdict.
    Case(
        "forged_memory_limit_verdict",
        FAILS(
            [
                "import os, sys",
                "print('result = 42', flush=True)",
                "pid = os.fork()",
                "if pid == 0:",
                "    a = []",
                "    while True:",
                "        a.append(b'x' * 10_000_000)",
                "os.waitpid(pid, 0)",
                "sys.exit(1)",
            ]
        ),
        status=("completed",),
        error_type=("script_error",),
        output_has=("result = 42",),
        check=lambda r, h: _not_stopped(r, h),
    ),
    # LOW (full sandbox). The same for the process limit: fork to pids.max once, kill the
    # children, exit 3: reported "Stopped: tried to run more than 64 processes ...".
    Case(
        "forged_process_limit_verdict",
        FAILS([*FILL_THE_PROCESS_LIMIT, "sys.exit(3)"]),
        status=("completed",),
        error_type=("script_error",),
        output_has=("result = 42",),
        check=lambda r, h: _not_stopped(r, h),
    ),
    # LOW (full sandbox, red team). The same, ended by the script's own SIGKILL rather than an
    # exit code: exit 137 read as "the platform stopped it", though the platform never stops
    # a run at the process limit (forks are refused; the run goes on). Only its wall clock,
    # its CPU or its memory stop it.
    Case(
        "forged_process_limit_verdict_by_self_kill",
        FAILS([*FILL_THE_PROCESS_LIMIT, "os.kill(os.getpid(), signal.SIGKILL)"]),
        status=("completed",),
        error_type=("script_error",),
        output_has=("result = 42",),
        check=lambda r, h: _not_stopped(r, h),
    ),
    # LOW (full sandbox). The interpreter's own site-packages is bound in with its prefix: -S
    # keeps it off sys.path, but one sys.path.append imports pip (and whatever else the host
    # installed there), and the directory listing shows the host's .pth files.
    Case(
        "prefix_site_packages_importable",
        FAILS(
            [
                "import os, sys",
                "v = sys.version_info",
                "sp = os.path.join(sys.prefix, 'lib', f'python{v[0]}.{v[1]}', 'site-packages')",
                "left = os.listdir(sp) if os.path.isdir(sp) else []",
                "sys.path.append(sp)",
                "try:",
                "    import pip",
                "    print('BREACH imported pip from', sp)",
                "except ImportError:",
                "    print('SAFE' if not left else 'BREACH listed', left[:3])",
            ]
        ),
    ),
    # LOW (full sandbox). Host information: bubblewrap's pid 1 keeps the launcher's environment,
    # and sh put the worker's working directory (the project path) in it: /proc/1/environ
    # shows PWD=/work/main. (Also readable, not masked: the host uid of the lease in
    # /proc/self/mountinfo (uid=6005xx), boot time in /proc/stat "btime" (as identifying as
    # the masked boot_id), and host-wide load, memory and cgroup counts: /proc/loadavg,
    # /proc/meminfo, /proc/vmstat, /proc/cgroups, sysinfo().)
    Case(
        "worker_cwd_in_init_environ",
        FAILS(
            [
                "env = open('/proc/1/environ', 'rb').read().split(b'\\0')",
                "pwd = [e for e in env if e.startswith(b'PWD=')]",
                "print('BREACH' if pwd and pwd != [b'PWD=/'] else 'SAFE', pwd)",
            ]
        ),
    ),
    # --- host information -----------------------------------------------------------------
    Case(
        "host_identity_masked",
        FAILS(
            [
                "paths = ['/proc/cmdline', '/proc/sys/kernel/random/boot_id', '/proc/config.gz',",
                "         '/proc/kallsyms', '/proc/modules', '/proc/sys/kernel/hostname',",
                "         '/proc/partitions', '/proc/diskstats', '/proc/iomem', '/proc/keys']",
                "for path in paths:",
                "    try:",
                "        with open(path, 'rb') as f:",
                "            data = f.read(4096)",
                "        print('SAFE empty' if not data else 'READ', path, data[:200])",
                "    except OSError as exc:",
                "        print('SAFE', path, type(exc).__name__)",
            ]
        ),
        check=lambda r, h: _host_identity_hidden(r, h),
    ),
    Case(
        "host_configuration_under_usr_covered",
        FAILS(
            [
                "import os",
                "for path in ('/usr/local/etc', '/usr/local/share', '/usr/src', '/usr/local/lib'):",
                "    try:",
                "        left = os.listdir(path)",
                "    except OSError:",
                "        left = []",
                "    print('BREACH' if left else 'SAFE', path, left[:5])",
            ]
        ),
    ),
]


# Attacks on the local sandbox's own machinery (its mounts and its seccomp filter), run against
# the local backend only: a pod has the image's root file system and its runtime's
# RuntimeDefault seccomp profile instead, which answer these differently.
LOCAL_CASES = [
    # MEDIUM (full sandbox). The empty covers (/usr/local, /usr/src, /proc/sys and the other
    # masked /proc directories, /dev/pts, the prefix's site-packages) are tmpfs mounts of their
    # own, owned by the sandbox's uid and without a size: the read-only remount of / does not
    # reach them, so a script chmod'ed one and wrote there, past the /tmp limit (bubblewrap's
    # default size is half the host's memory; 1000 bytes into each of nine, measured). Without
    # cgroups (the rlimits fallback) nothing charges tmpfs pages: 400 MiB written into
    # /usr/local under a 64 MiB limit stayed in host memory (Shmem +399 MiB, peak shown 18 MiB).
    Case(
        "cover_mounts_are_read_only",
        FAILS(
            [
                "import glob, os, sys",
                "covers = ['/usr/local', '/usr/src', '/proc/sys', '/proc/acpi', '/proc/bus',",
                "          '/proc/driver', '/proc/fs', '/proc/irq', '/proc/pressure',",
                "          '/proc/scsi', '/dev/pts']",
                "covers += glob.glob(sys.prefix + '/lib/python*/site-packages')",
                "wrote, tried = [], 0",
                "for path in covers:",
                "    if not os.path.isdir(path):",
                "        continue",
                "    tried += 1",
                "    try:",
                "        os.chmod(path, 0o755)",
                "    except OSError:",
                "        pass",
                "    try:",
                "        with open(os.path.join(path, 'integr8s-probe'), 'wb') as f:",
                "            f.write(b'x' * 65536)",
                "        wrote.append(path)",
                "    except OSError:",
                "        pass",
                "print('BREACH wrote into ' + ' '.join(wrote) if wrote else 'SAFE', tried)",
            ]
        ),
    ),
    # MEDIUM (full sandbox, hosts with a huge page pool). Huge pages come from the host's
    # hugetlb pool, which the memory cgroup does not charge: with vm.nr_hugepages=40 here, a
    # script under a 32 MiB limit held all 80 MiB of the pool (HugePages_Free 0), reported as a
    # 7 MiB peak. A database that keeps a pool (PostgreSQL's huge_pages) would lose it to runs.
    # Refused by the platform (EPERM), not by an empty pool (ENOMEM: the kernel was asked).
    Case(
        "hugetlb_pool_refused",
        FAILS(
            [
                "import mmap, os",
                "MAP_HUGETLB, MFD_HUGETLB, PRIVATE_ANON = 0x40000, 4, 0x22",
                "HUGE = PRIVATE_ANON | MAP_HUGETLB",
                "attempts = {",
                "    'mmap MAP_HUGETLB': lambda: mmap.mmap(-1, 2 << 20, flags=HUGE),",
                "    'memfd_create MFD_HUGETLB': lambda: os.memfd_create('h', MFD_HUGETLB),",
                "}",
                "for name, attempt in attempts.items():",
                "    try:",
                "        attempt()",
                "        print('BREACH', name, 'was let through')",
                "    except PermissionError:",
                "        print('SAFE', name)",
                "    except OSError as exc:",
                "        print('BREACH', name, 'reached the host pool:', exc)",
                "mmap.mmap(-1, 4 << 20, flags=PRIVATE_ANON).write(b'x' * (4 << 20))",
                "print('SAFE ordinary mappings work')",
            ]
        ),
        check=lambda r, h: _no_breach_lines(r, h, 3),
    ),
    # LOW-MEDIUM (full sandbox). As sync() and syncfs(): fsync() of a read-only descriptor of a
    # host file (the interpreter, anything under /usr) makes ext4 flush the host disk's write
    # cache. A loop of them cut the host's fsync rate (the database's commits) from ~10000 to
    # ~3300 per 2 s. fsync and its kind are now answered 0 without reaching the kernel (the
    # sandbox writes only to tmpfs, where they do nothing): the kernel refuses them for a pipe,
    # and a call that says 0 there never reached it. sqlite3 on /tmp still commits.
    Case(
        "fsync_reaches_host_disk",
        FAILS(
            [
                "import ctypes, os, sqlite3, sys, time",
                "libc = ctypes.CDLL(None, use_errno=True)",
                "r, w = os.pipe()",
                "calls = {",
                "    'fsync': lambda: os.fsync(w), 'fdatasync': lambda: os.fdatasync(w),",
                "    'sync_file_range': lambda: libc.sync_file_range(w, 0, 0, 2),",
                "    'msync MS_SYNC': lambda: libc.msync(ctypes.c_void_p(1), 4096, 4),",
                "}",
                "for name, call in calls.items():",
                "    ctypes.set_errno(0)",
                "    try:",
                "        ret = call()",
                "    except OSError as exc:",
                "        ret, err = -1, exc.errno",
                "    else:",
                "        err = ctypes.get_errno()",
                "    print('SAFE' if ret in (0, None) else 'BREACH', name, ret, err)",
                "fd = os.open(sys.executable, os.O_RDONLY)",
                "start = time.monotonic()",
                "for _ in range(1000):",
                "    os.fsync(fd)",
                "print('1000 fsyncs of a host file:', round(time.monotonic() - start, 4), 's')",
                "db = sqlite3.connect('/tmp/t.db')",
                "db.execute('create table t (x)')",
                "db.execute('insert into t values (42)')",
                "db.commit()",
                "kept = db.execute('select x from t').fetchone()",
                "print('SAFE sqlite' if kept == (42,) else 'BREACH sqlite', kept)",
            ]
        ),
        check=lambda r, h: _no_breach_lines(r, h, 5),
    ),
    # MEDIUM (rlimits fallback only). Each POSIX timer holds a queued-signal entry from its
    # creation, kernel memory that no rlimit counts: 96,000 timers (RLIMIT_SIGPENDING's
    # default) held 36 MiB of slab beside a 64 MiB limit, reported as an 18 MiB peak. With a
    # cgroup that memory is charged to the run (stopped or counted); without, the launcher
    # holds the run to 1024 queued signals.
    Case(
        "posix_timers_hold_kernel_memory",
        FAILS(
            [
                "import ctypes",
                "libc = ctypes.CDLL(None, use_errno=True)",
                "event = (ctypes.c_int * 16)(0, 0, 0, 1)  # sigev_notify = SIGEV_NONE",
                "timer = ctypes.c_void_p()",
                "made = 0",
                "while made < 200_000:",
                "    if libc.timer_create(1, event, ctypes.byref(timer)) != 0:",
                "        break",
                "    made += 1",
                "print('SAFE made', made, 'timers', flush=True)",
            ]
        ),
        status=("completed", "failed"),
        error_type=(None, "memory_limit"),
        output_has=(),
        limits={"memory_bytes": 64 * MIB},
        check=lambda r, h: _timers_bounded_or_charged(r, h),
    ),
    # HIGH (rlimits fallback only). Empty files cost a tmpfs no blocks, so its size limit does
    # not hold them: each is an inode and a dentry in kernel memory (~1.3 KiB). With a cgroup
    # they are charged to the run (stopped at its memory limit); without one nothing counted
    # them: 347,000 files in /tmp held 461 MiB of slab beside a 64 MiB limit, an 18 MiB peak
    # shown. bubblewrap cannot give its tmpfs an nr_inodes, so the supervisor counts the
    # inodes of the sandbox's writable mounts and stops the run at its memory limit.
    Case(
        "tmpfs_inodes_outside_the_memory_limit",
        FAILS(
            [
                "import os, time",
                "start, made = time.monotonic(), 0",
                "try:",
                "    while time.monotonic() - start < 3:",
                "        for _ in range(1000):",
                "            os.close(os.open(f'/tmp/f{made}', os.O_CREAT | os.O_WRONLY))",
                "            made += 1",
                "except OSError as exc:",
                "    print('stopped', exc)",
                "print('SAFE made', made, 'files', flush=True)",
            ]
        ),
        status=("completed", "failed"),
        error_type=(None, "memory_limit"),
        output_has=(),
        limits={"memory_bytes": 64 * MIB, "wall_time_s": 6},
        check=lambda r, h: _files_charged(r, h),
    ),
    # The per-user kernel quotas that runs under one host uid would share (inotify instances,
    # message queue bytes, keys, System V IPC, kernel AIO's host-wide aio-max-nr): their
    # interfaces are absent (ENOSYS, as on a kernel without them) or refused (keys: EPERM),
    # so no run can use them up for the next, whatever uid it has.
    Case(
        "per_user_quota_interfaces_absent",
        FAILS(
            [
                "import ctypes, errno, platform",
                "libc = ctypes.CDLL(None, use_errno=True)",
                "libc.syscall.restype = ctypes.c_long",
                "NR = {",
                "    'x86_64': dict(inotify_init1=294, mq_open=240, msgget=68, semget=64,",
                "                   shmget=29, io_setup=206, add_key=248, keyctl=250),",
                "    'aarch64': dict(inotify_init1=26, mq_open=180, msgget=186, semget=190,",
                "                    shmget=194, io_setup=0, add_key=217, keyctl=219),",
                "}[platform.machine()]",
                "ctx = ctypes.c_ulong(0)",
                "calls = {",
                "    'inotify_init1': (0,), 'mq_open': (b'q', 0o100 | 2, 0o600, None),",
                "    'msgget': (0, 0o1000 | 0o600), 'semget': (0, 1, 0o1000 | 0o600),",
                "    'shmget': (0, 4096, 0o1000 | 0o600), 'io_setup': (8, ctypes.byref(ctx)),",
                "    'add_key': (b'user', b'k', b'v', 1, -3), 'keyctl': (0, -3, 1),",
                "}",
                "for name, args in calls.items():",
                "    ctypes.set_errno(0)",
                "    ret = libc.syscall(NR[name], *args)",
                "    err = errno.errorcode.get(ctypes.get_errno(), '?')",
                "    absent = err == ('EPERM' if name in ('add_key', 'keyctl') else 'ENOSYS')",
                "    print('SAFE' if ret == -1 and absent else 'BREACH', name, ret, err)",
                "import queue, multiprocessing.shared_memory  # the stdlib has what it needs",
                "print('SAFE stdlib')",
            ]
        ),
        check=lambda r, h: _no_breach_lines(r, h, 9),
    ),
    # MEDIUM (full sandbox, hosts whose core_pattern is a pipe: Ubuntu's apport, systemd-
    # coredump). `ulimit -c 0` does not stop a piped core dump: the kernel starts the host's
    # helper as host root, outside the run's cgroup, for every crash, and hands it the crashed
    # process's memory. With core_pattern set to a logging helper, three segfaulting children
    # ran it three times ("helper ran as 0 ... limit 0"). The limit is now 1 byte, the kernel's
    # "never pipe a core" value ("RLIMIT_CORE is set to 1, aborting core"), and seccomp keeps
    # the script from lowering it to 0 again. Judged from the limit: this case cannot change the
    # host's core_pattern to show the helper starting.
    Case(
        "core_dumps_reach_the_host_helper",
        FAILS(
            [
                "import ctypes, os, platform, resource",
                "limit = resource.getrlimit(resource.RLIMIT_CORE)",
                "print('SAFE' if limit == (1, 1) else 'BREACH', 'core limit', limit)",
                "SETRLIMIT = {'x86_64': 160, 'aarch64': 164}[platform.machine()]",
                "libc = ctypes.CDLL(None, use_errno=True)",
                "zero = (ctypes.c_ulong * 2)(0, 0)",
                "attempts = {",
                "    'setrlimit': lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)),",
                "    'prlimit': lambda: resource.prlimit(0, resource.RLIMIT_CORE, (0, 0)),",
                "    'raw setrlimit': lambda: libc.syscall(SETRLIMIT, 4, zero) and 1 / 0,",
                "}",
                "for name, attempt in attempts.items():",
                "    try:",
                "        attempt()",
                "    except (OSError, ValueError, ZeroDivisionError):",
                "        pass",
                "    limit = resource.getrlimit(resource.RLIMIT_CORE)",
                "    print('SAFE' if limit == (1, 1) else 'BREACH', name, limit)",
                "files = resource.getrlimit(resource.RLIMIT_NOFILE)",
                "resource.setrlimit(resource.RLIMIT_NOFILE, files)",
                "print('SAFE other limits may be set')",
                "try:",
                "    if os.fork() == 0:",
                "        ctypes.string_at(0)  # a crash: no core, anywhere",
                "    os.wait()",
                "except PermissionError:",
                "    pass  # no fork without cgroups",
                "print('files in /tmp:', os.listdir('/tmp'))",
            ]
        ),
        check=lambda r, h: _no_breach_lines(r, h, 5),
    ),
    # MEDIUM-HIGH (full sandbox). A classic BPF program on a socket (SO_ATTACH_FILTER, on a
    # Unix socket the filter allows) is kernel memory the run's cgroup does not charge, twice
    # over (the program and its compiled image): 11 processes x 250 filters held ~140 MiB of
    # host memory past a 128 MiB limit, the run reported as a normal completion. The compiled
    # images come out of one host-wide budget (net.core.bpf_jit_limit) that every sandbox's
    # own seccomp filter needs, so a run with room enough could keep the next ones from
    # starting. A seccomp filter of the script's own is a BPF program too.
    Case(
        "bpf_programs_refused",
        FAILS(
            [
                "import ctypes, platform, socket, struct",
                "libc = ctypes.CDLL(None, use_errno=True)",
                "insn = struct.pack('HBBI', 0x06, 0, 0, 0xFFFF)  # BPF_RET | BPF_K: keep all",
                "code = ctypes.create_string_buffer(insn)",
                "prog = struct.pack('HL', 1, ctypes.addressof(code))",
                "a, b = socket.socketpair()",
                "for name, option in (('SO_ATTACH_FILTER', 26), ('SO_ATTACH_BPF', 50)):",
                "    try:",
                "        a.setsockopt(socket.SOL_SOCKET, option, prog)",
                "        print('BREACH', name, 'attached')",
                "    except PermissionError:",
                "        print('SAFE', name)",
                "    except OSError as exc:",
                "        print('BREACH', name, 'reached the kernel:', exc)",
                "fprog = ctypes.create_string_buffer(prog)",
                "nr = {'x86_64': 317, 'aarch64': 277}[platform.machine()]",
                "calls = {",
                "    'seccomp()': lambda: libc.syscall(nr, 1, 0, fprog),",
                "    'prctl PR_SET_SECCOMP': lambda: libc.prctl(22, 2, fprog, 0, 0),",
                "}",
                "for name, call in calls.items():",
                "    ctypes.set_errno(0)",
                "    ret = call()",
                "    err = ctypes.get_errno()",
                "    print('SAFE' if ret == -1 and err == 1 else 'BREACH', name, ret, err)",
                "a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)",
                "print('SAFE other socket options work')",
            ]
        ),
        check=lambda r, h: _no_breach_lines(r, h, 5),
    ),
    # MEDIUM (full sandbox). Pages of host files the host has cached cost a run nothing to
    # hold: mlock() of them (26 processes locked ~200 MiB, the run's peak 23 MiB), or a pipe
    # that pins them (one-byte splices of host files kept 60 MiB of cache resident, peak
    # 4 MiB; sendfile() into a pipe splices too). All four are refused; shutil.copy, which
    # tries sendfile first, falls back to reading and writing.
    Case(
        "host_page_cache_not_held",
        FAILS(
            [
                "import ctypes, mmap, os, shutil, sys",
                "libc = ctypes.CDLL(None, use_errno=True)",
                "area = mmap.mmap(-1, 4096)",
                "address = ctypes.addressof(ctypes.c_char.from_buffer(area))",
                "ctypes.set_errno(0)",
                "ret = libc.mlock(ctypes.c_void_p(address), ctypes.c_size_t(4096))",
                "err = ctypes.get_errno()",
                "print('SAFE' if ret == -1 and err == 1 else 'BREACH', 'mlock', ret, err)",
                "MAP_LOCKED = 0x2000",
                "exe = open(sys.executable, 'rb')",
                "try:",
                "    flags = mmap.MAP_PRIVATE | MAP_LOCKED",
                "    mmap.mmap(exe.fileno(), 4096, flags=flags, prot=mmap.PROT_READ)",
                "    print('BREACH', 'mmap MAP_LOCKED of a host file went through')",
                "except PermissionError:",
                "    print('SAFE', 'mmap MAP_LOCKED')",
                "import resource",
                "locked = resource.getrlimit(resource.RLIMIT_MEMLOCK)",
                "print('SAFE' if locked == (0, 0) else 'BREACH', 'RLIMIT_MEMLOCK', locked)",
                "r, w = os.pipe()",
                "src = os.open(sys.executable, os.O_RDONLY)",
                "attempts = {'sendfile into a pipe': lambda: os.sendfile(w, src, 0, 1)}",
                "if hasattr(os, 'splice'):",
                "    attempts['splice'] = lambda: os.splice(src, w, 1)",
                "else:",
                "    attempts['splice'] = lambda: print('SAFE', 'splice (no os.splice)') or 0",
                "for name, attempt in attempts.items():",
                "    try:",
                "        attempt()",
                "        if name != 'splice' or hasattr(os, 'splice'):",
                "            print('BREACH', name, 'went through')",
                "    except PermissionError:",
                "        print('SAFE', name)",
                "shutil.copy(sys.executable, '/tmp/copy')",
                "copied, original = open('/tmp/copy', 'rb'), open(sys.executable, 'rb')",
                "same = copied.read(4096) == original.read(4096)",
                "print('SAFE shutil.copy' if same else 'BREACH shutil.copy broke')",
            ]
        ),
        check=lambda r, h: _no_breach_lines(r, h, 6),
    ),
    # LOW-MEDIUM (full sandbox). posix_fadvise(POSIX_FADV_DONTNEED) on a read-only host file
    # drops the host's cached copy of it: one run emptied the cache of ~135,000 files under
    # /usr, the interpreters and the package set in 1.5 s (the worker's and the web server's
    # own Python among them). Advice is answered "done" without reaching the kernel; so is
    # madvise's paging out (MADV_COLD, MADV_PAGEOUT) of a mapping of a host file.
    Case(
        "host_page_cache_not_evicted",
        FAILS(
            [
                "import mmap, os, sys",
                "path = os.path.join(sys.prefix, 'lib', 'python%d.%d' % sys.version_info[:2],",
                "                    'pydoc_data', 'topics.py')",
                "data = open(path, 'rb').read()  # in the host's cache now",
                "fd = os.open(path, os.O_RDONLY)",
                "os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)",
                "print('SAFE fadvise answered')",
                "area = mmap.mmap(fd, 0, prot=mmap.PROT_READ)",
                "cold, pageout = getattr(mmap, 'MADV_COLD', 20), getattr(mmap, 'MADV_PAGEOUT', 21)",
                "for advice in (cold, pageout):",
                "    area.madvise(advice)",
                "print('SAFE madvise answered')",
                "print('PATH', path)",
            ]
        ),
        output_has=("SAFE fadvise answered", "SAFE madvise answered", "PATH "),
        check=lambda r, h: _host_file_still_cached(r, h),
        host_checks=True,
    ),
]


def _files_charged(result: RunResult, host: HostContext) -> None:
    """Stopped at the memory limit, or the run's measured memory covers its files' inodes
    (~1.3 KiB each; 500 bytes counted here)."""
    if result.status == "failed":
        return
    made = int(result.output.split("SAFE made ")[1].split()[0])
    assert result.peak_memory_kb is not None
    assert result.peak_memory_kb * 1024 >= made * 500, (made, result)


def _timers_bounded_or_charged(result: RunResult, host: HostContext) -> None:
    """Without cgroups (where the peak is only the largest process's RSS) few timers; with a
    cgroup, the run's measured memory covers theirs (~380 bytes of kernel memory each; 300
    counted here)."""
    if result.status == "failed":
        return
    made = int(result.output.split("SAFE made ")[1].split()[0])
    if result.extra.get("limits_by") == "rlimits":
        assert made <= 2048, (made, result)
        return
    assert result.peak_memory_kb is not None
    assert result.peak_memory_kb * 1024 >= made * 300, (made, result)


def _names_tmp(result: RunResult, host: HostContext) -> None:
    assert "/tmp was full (it holds at most 4 MiB)" in result.reason, result.reason


def _not_stopped(result: RunResult, host: HostContext) -> None:
    # The script ended itself (exit 1 or 3) inside its limits: the platform must not say it
    # was "Stopped" at a limit, though the reason names the limit a part of the run met.
    assert "Stopped" not in result.reason and "limit" in result.reason, result.reason


def _no_breach_lines(result: RunResult, host: HostContext, safe: int) -> None:
    assert result.output.count("SAFE") == safe, result.output


def _queued_is_charged(result: RunResult, host: HostContext) -> None:
    """Kernel buffers the script filled count against its memory: it was stopped at the
    limit, or the peak the platform measured covers what it queued."""
    if result.status == "failed":
        return
    queued = int(result.output.split("SAFE queued ")[1].split()[0])
    assert result.peak_memory_kb is not None
    assert result.peak_memory_kb * 1024 >= queued * 0.9, (queued, result.peak_memory_kb)


def _cpu_within(result: RunResult, host: HostContext, limit_ms: int) -> None:
    assert "CPU" in result.reason, result.reason
    assert result.cpu_time_ms is not None and result.cpu_time_ms <= limit_ms + 400, result


def _not_a_limit(result: RunResult, host: HostContext) -> None:
    assert "Stopped" not in result.reason and "limit" not in result.reason, result.reason


def _no_nul(result: RunResult, host: HostContext) -> None:
    assert "\x00" not in result.output + result.errors
    assert "c\u2400d" in result.errors, result.errors


def _host_identity_hidden(result: RunResult, host: HostContext) -> None:
    assert "READ" not in result.output, result.output
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/cmdline"):
        with open(path) as f:
            secret = f.read().strip()
        assert secret and secret not in result.output, path


def _host_file_still_cached(result: RunResult, host: HostContext) -> None:
    """The file the script read and then advised away is still in the host's page cache
    (util-linux's fincore, from the host)."""
    import shutil
    import subprocess

    path = result.output.split("PATH ")[1].split("\n")[0]
    if shutil.which("fincore") is None:  # pragma: no cover
        return
    found = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", path],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(found.stdout.strip()) > 0, (path, found.stdout)

"""A tour of the standard library, run by every interpreter (2.7, 3.6-3.13) under the seccomp
filter: tests/test_seccomp.py passes it to `python -c`. Each step prints "ok <name>"; the last
line is "ok done". Written for Python 2.7 too: no f-strings, no async syntax, no `with Pool()`.
"""

import sys

PY3 = sys.version_info[0] >= 3


def step(name):
    sys.stdout.write("ok " + name + "\n")
    sys.stdout.flush()


def interpreter_flags():
    return ["-I", "-S"] if PY3 else ["-E", "-s", "-S"]


def threads():
    import threading

    results = []
    lock = threading.Lock()
    ready = threading.Event()

    def work(n):
        ready.wait()
        with lock:
            results.append(n * n)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for worker in workers:
        worker.start()
    ready.set()
    for worker in workers:
        worker.join()
    assert sorted(results) == [n * n for n in range(8)], results
    if PY3:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(2)
        assert list(pool.map(abs, [-1, -2])) == [1, 2]
        pool.shutdown()
    step("threads")


def subprocesses():
    import subprocess

    code = "import sys; sys.stdout.write('child')"
    out = subprocess.check_output([sys.executable] + interpreter_flags() + ["-c", code])
    assert out == b"child", out
    child = subprocess.Popen(
        [sys.executable] + interpreter_flags() + ["-c", "import sys; sys.exit(3)"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        close_fds=True,
    )
    child.communicate(b"")
    assert child.returncode == 3, child.returncode
    import os

    if hasattr(os, "posix_spawn"):  # 3.8+: glibc tries clone3 first, then clone
        pid = os.posix_spawn(sys.executable, [sys.executable, "-c", "pass"], {})
        assert os.waitpid(pid, 0)[1] == 0
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    assert os.waitpid(pid, 0)[1] >> 8 == 7
    step("subprocess")


def multiprocessing_pool():
    import multiprocessing

    pool = multiprocessing.Pool(2)
    assert pool.map(abs, [-1, -2, -3]) == [1, 2, 3]
    pool.close()
    pool.join()
    queue = multiprocessing.Queue()
    lock = multiprocessing.Lock()
    with lock:
        queue.put("x")
    assert queue.get(timeout=10) == "x"
    if PY3:
        # A fresh interpreter per worker, and (3.8+) the resource tracker.
        pool = multiprocessing.get_context("spawn").Pool(2)
        assert pool.map(abs, [-4, -5]) == [4, 5]
        pool.close()
        pool.join()
    try:
        from multiprocessing import shared_memory  # 3.8+
    except ImportError:
        pass
    else:
        block = shared_memory.SharedMemory(create=True, size=4096)
        block.buf[0] = 42
        block.close()
        block.unlink()
    step("multiprocessing")


def event_loop():
    if not PY3:
        return
    import asyncio
    import socket

    loop = asyncio.new_event_loop()  # epoll, and a socketpair to wake itself
    left, right = socket.socketpair()
    left.setblocking(False)
    right.setblocking(False)
    got = loop.create_future()

    def readable():
        loop.remove_reader(right.fileno())
        got.set_result(right.recv(16))

    loop.add_reader(right.fileno(), readable)
    loop.call_later(0.01, left.send, b"ping")
    assert loop.run_until_complete(got) == b"ping"
    loop.run_until_complete(asyncio.sleep(0.01))
    assert loop.run_until_complete(loop.run_in_executor(None, abs, -9)) == 9
    loop.close()
    left.close()
    right.close()
    step("asyncio")


def unix_sockets():
    import os
    import socket

    path = "/tmp/workout.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(path)
    conn = server.accept()[0]
    client.sendall(b"hello")
    assert conn.recv(5) == b"hello"
    for sock in (conn, client, server):
        sock.close()
    os.unlink(path)
    datagrams = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    datagrams.close()
    assert socket.gethostname()
    step("unix sockets")


def files():
    import fcntl
    import mmap
    import os
    import shutil
    import sqlite3
    import tempfile

    db = sqlite3.connect("/tmp/workout.db")
    db.execute("pragma journal_mode=wal")
    db.execute("create table t (x)")
    db.executemany("insert into t values (?)", [(n,) for n in range(100)])
    db.commit()
    assert db.execute("select sum(x) from t").fetchone()[0] == 4950
    db.close()
    step("sqlite3")

    handle, name = tempfile.mkstemp()
    os.write(handle, b"x" * 10000)
    os.close(handle)
    folder = tempfile.mkdtemp()
    shutil.copy(name, os.path.join(folder, "copy"))
    shutil.copy2(name, os.path.join(folder, "copy2"))
    assert os.path.getsize(os.path.join(folder, "copy2")) == 10000
    os.rename(os.path.join(folder, "copy"), os.path.join(folder, "moved"))
    os.symlink("moved", os.path.join(folder, "link"))
    assert os.readlink(os.path.join(folder, "link")) == "moved"
    os.chmod(name, 0o600)
    os.utime(name, None)
    assert sorted(os.listdir(folder)) == ["copy2", "link", "moved"]
    if hasattr(os, "mkfifo"):
        os.mkfifo(os.path.join(folder, "fifo"))
    shutil.rmtree(folder)
    step("tempfile, shutil")

    with open(name, "r+b") as f:
        mapped = mmap.mmap(f.fileno(), 0)
        mapped[0:1] = b"y"
        mapped.flush()
        mapped.close()
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        fcntl.lockf(f.fileno(), fcntl.LOCK_UN)
    anonymous = mmap.mmap(-1, 1 << 20)
    anonymous.write(b"z" * 100)
    anonymous.close()
    os.unlink(name)
    step("mmap, fcntl")

    read, write = os.pipe()
    flags = fcntl.fcntl(read, fcntl.F_GETFL)
    fcntl.fcntl(read, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    os.write(write, b"p")
    assert os.read(read, 1) == b"p"
    os.close(read)
    os.close(write)
    step("pipe")

    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("workout")
        os.write(fd, b"m")
        os.close(fd)
    if hasattr(os, "eventfd"):
        fd = os.eventfd(0)
        os.eventfd_write(fd, 1)
        assert os.eventfd_read(fd) == 1
        os.close(fd)
    if hasattr(os, "pidfd_open"):
        os.close(os.pidfd_open(os.getpid()))
    step("memfd, eventfd, pidfd")


def waiting():
    import os
    import select
    import signal
    import time

    read, write = os.pipe()
    os.write(write, b"s")
    assert select.select([read], [], [], 1)[0] == [read]
    poller = select.poll()
    poller.register(read, select.POLLIN)
    assert poller.poll(1000)
    epoll = select.epoll()
    epoll.register(read, select.EPOLLIN)
    assert epoll.poll(1)
    epoll.close()
    os.close(read)
    os.close(write)
    step("select, poll, epoll")

    def on_alarm(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(10)
    signal.alarm(0)
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    started = time.time()
    try:
        time.sleep(5)
        raise AssertionError("the timer did not fire")
    except KeyboardInterrupt:
        pass
    assert time.time() - started < 4
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    os.kill(os.getpid(), 0)
    step("signal, alarm, sleep")


def the_rest():
    import ctypes
    import datetime
    import hashlib
    import json
    import locale
    import os
    import platform
    import random
    import resource
    import ssl
    import time
    import uuid
    import zlib

    assert json.loads(json.dumps({"a": [1, 2]})) == {"a": [1, 2]}
    assert zlib.decompress(zlib.compress(b"x" * 1000)) == b"x" * 1000
    assert hashlib.sha256(b"").hexdigest().startswith("e3b0")
    hashlib.md5(b"x").hexdigest()
    ssl.create_default_context()
    assert ctypes.CDLL(None).getpid() == os.getpid()
    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda n: n + 1)
    assert callback(1) == 2
    cpus = os.cpu_count() if PY3 else __import__("multiprocessing").cpu_count()
    assert cpus >= 1
    if hasattr(os, "sched_getaffinity"):
        assert os.sched_getaffinity(0)
    locale.setlocale(locale.LC_ALL, "")
    random.random()
    random.SystemRandom().random()
    os.urandom(16)
    assert uuid.uuid4().version == 4
    datetime.datetime.now()
    time.monotonic() if PY3 else time.time()
    time.process_time() if PY3 else time.clock()
    resource.getrlimit(resource.RLIMIT_NOFILE)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    resource.getrusage(resource.RUSAGE_SELF)
    os.getloadavg()
    platform.platform()
    os.nice(0)
    if PY3:
        import faulthandler

        faulthandler.enable()
    import pty

    master, slave = pty.openpty()
    os.write(slave, b"t")
    os.close(slave)
    os.close(master)
    step("json, zlib, hashlib, ssl, ctypes, locale, uuid, datetime, resource, pty")


threads()
subprocesses()
multiprocessing_pool()
event_loop()
unix_sockets()
files()
waiting()
the_rest()
step("done")

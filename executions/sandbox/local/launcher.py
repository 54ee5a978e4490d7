"""Launchers: one per sandbox, started ahead of its run when it is a warm spare.

A launcher is /bin/sh that joins a run's cgroup, says READY, sets the rlimits and execs
bubblewrap (as root, through one nsenter that enters the stage and gives up root for the
sandbox's leased host uid), whose interpreter then waits on a pipe for its script (see
prelude.py). The script, the start signal and bubblewrap's options and seccomp filter travel
through file descriptors the launcher holds from its start.
"""

import contextlib
import logging
import os
import queue
import selectors
import subprocess
import threading
from typing import IO

from executions.sandbox.contract import RunSpec
from executions.sandbox.local import command
from executions.sandbox.local.cgroup import RunCgroup
from executions.sandbox.local.leases import Lease

log = logging.getLogger(__name__)


def memfd_with(name: str, data: bytes) -> int:
    """A memfd holding data, rewound (close-on-exec here; a launcher gets it by pass_fds)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        offset = 0
        while offset < len(view):
            offset += os.pwrite(fd, view[offset:], offset)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Launcher:
    """/bin/sh in its cgroup (if any), waiting to exec a run's sandbox."""

    def __init__(
        self,
        proc: subprocess.Popen,
        group: RunCgroup | None,
        recipe: tuple,
        script_w: int,
        start_r: int,
        lease: Lease | None,
        stage_pid: int | None,
        go_w: int = -1,
    ):
        self.proc = proc
        self.group = group
        self.recipe = recipe  # (runtime, limits) its sandbox was started for
        self.script_w = script_w  # the pipe its interpreter waits on for the script
        self.start_r = start_r  # the prelude writes one byte here once it has the script
        self.go_w = go_w  # and then waits for one byte here before it runs it
        self.lease = lease  # its host uid (root workers), held until the launcher is gone
        self.stage_pid = stage_pid  # the stage it entered (root workers)
        self.ready = False  # READY read from stdout: in its cgroup, unprivileged (as root)

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the launcher has joined its cgroup (and so may be renamed)."""
        if not self.ready:
            fd = self.stdout.fileno()
            with selectors.DefaultSelector() as sel:
                sel.register(fd, selectors.EVENT_READ)
                if sel.select(timeout):
                    self.ready = os.read(fd, len(command.READY)) == command.READY
        return self.ready

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

    def go(self) -> None:
        """Let the interpreter, which said it has its script, run it; once only."""
        if self.go_w < 0:
            return
        with contextlib.suppress(OSError):  # the sandbox is gone: the run reports how
            os.write(self.go_w, b"G")
        os.close(self.go_w)
        self.go_w = -1

    def finish(self) -> None:
        """Make sure the process is gone and reaped, and its pipes closed."""
        if self.proc.returncode is None:
            with contextlib.suppress(OSError):
                self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self.deliver(b"")
        if self.start_r >= 0:
            os.close(self.start_r)
            self.start_r = -1
        if self.go_w >= 0:
            os.close(self.go_w)
            self.go_w = -1

    def discard(self) -> None:
        """Stop it and free what it holds: its cgroup, then (nothing of it left) its uid."""
        self.finish()
        removed = self.group.remove() if self.group is not None else True
        if self.lease is not None and removed:
            self.lease.release()


class Teardown:
    """Launchers discarded in a thread of their own, after their run's result is known.

    Removing a run's cgroup waits for the kernel to take it offline (on v1, 5-10 ms here: a
    quarter of a `print("hi")` run end to end), and nothing of the result waits on it: the
    script's processes are dead (the sandbox's pid 1 ended, and remove() kills what is
    left), its usage has been read, and its host uid stays leased until the group is gone.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Launcher, str]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def discard(self, launcher: Launcher, name: str) -> None:
        """Discard launcher soon; name is its run's, for the log."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="sandbox-teardown", daemon=True
                )
                self._thread.start()
        self._queue.put((launcher, name))

    def settle(self) -> None:
        """Until every launcher handed over so far is discarded."""
        self._queue.join()

    def _loop(self) -> None:
        while True:
            launcher, name = self._queue.get()
            try:
                launcher.discard()
                if launcher.group is not None and not launcher.group.is_empty():
                    log.error("could not remove cgroup of run %s", name)
            except Exception:
                log.exception("could not tear down the sandbox of run %s", name)
            finally:
                self._queue.task_done()


def spawn(
    spec: RunSpec,
    args: list[str],
    group: RunCgroup | None,
    seccomp: bytes | None,
    lease: Lease | None = None,
    stage_pid: int | None = None,
) -> Launcher:
    """Start a launcher for spec: bubblewrap with the options args (from command.sandbox_args)
    and the compiled seccomp filter, as lease's host uid inside the stage when given."""
    fds: list[int] = []
    script_r, script_w = os.pipe2(os.O_CLOEXEC)
    start_r, start_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    try:
        fds += [script_r, start_w, go_r]
        inputs = []
        for name, data in spec.files:  # bubblewrap copies each, then closes the descriptor
            inputs.append((name, memfd_with("input", data)))
            fds.append(inputs[-1][1])
        args = args + command.input_args(inputs)
        # A file of arguments spares dash reading a long line one byte at a time.
        args_fd = memfd_with("args", "\0".join(args).encode() + b"\0")
        fds.append(args_fd)
        argv = [command.BWRAP, "--args", str(args_fd)]
        if seccomp is not None:
            seccomp_fd = memfd_with("seccomp", seccomp)
            fds.append(seccomp_fd)
            argv += ["--seccomp", str(seccomp_fd)]
        argv += command.python(spec, script_r, start_w, go_r)
        if stage_pid is not None and lease is not None:
            # nsenter --setgid also clears the supplementary groups.
            argv = [
                command.NSENTER, "--target", str(stage_pid), "--mount",
                "--setuid", str(lease.name), "--setgid", str(lease.name), "--", *argv,
            ]  # fmt: skip
        argv = command.prlimits(group is not None) + argv
        program = command.launcher_program(
            group.join_paths if group else [],
            command.rlimits(spec, group is not None),
            argv,
        )
        proc = subprocess.Popen(
            [command.SH, "-c", program, "sandbox"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=command.LAUNCH_ENV,
            cwd="/",  # the shell puts its directory in PWD, which bubblewrap's init keeps
            start_new_session=True,
            pass_fds=fds,
        )
    except BaseException:
        os.close(script_w)
        os.close(start_r)
        os.close(go_w)
        raise
    finally:
        for fd in fds:
            os.close(fd)
    recipe = (spec.runtime, spec.limits)
    return Launcher(proc, group, recipe, script_w, start_r, lease, stage_pid, go_w)

"""The stage: how a sandbox running as an unprivileged host uid reaches interpreters it may
not traverse to (pyenv's under /root, mode 700), without changing anything on the host.

A root process in a private mount namespace bind-mounts those directories read-only under a
tmpfs at /mnt and waits; launchers enter that namespace with nsenter before they give up root,
and bubblewrap binds the interpreter from there to its usual path.
"""

import contextlib
import os
import selectors
import shlex
import stat
import subprocess

from executions.sandbox.local.command import LAUNCH_ENV, LAUNCH_FAILED, MOUNT, READY, SH, UNSHARE

# Where the stage's tmpfs is mounted, in its private mount namespace only: the first that exists.
STAGE_MOUNTS = ("/mnt", "/media", "/srv")
STAGE_TIMEOUT_S = 5.0


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


class Stage:
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
            cwd="/",
            start_new_session=True,
        )
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr  # all PIPE
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
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

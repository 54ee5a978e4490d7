"""Host-wide leases: one of a fixed set of names, held by an exclusive flock on a file named
after it, in a directory every worker on the host shares. The kernel drops the lock when the
holder dies, so a crashed worker's leases come back by themselves. Host uids for sandboxes
(uids.py) and sandbox slots (one per core, slots.py) are leased this way.
"""

import contextlib
import fcntl
import os
import random
from collections.abc import Sequence


class Lease:
    """One name, held until release() (or until the process holding it dies)."""

    def __init__(self, name: int, fd: int):
        self.name = name
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the flock
            self._fd = -1


class LeasePool:
    def __init__(self, names: Sequence[int], directory: str):
        self.names = names
        self.directory = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)

    def try_lease(self) -> Lease | None:
        """A name no other holder on this host has, or None when all are taken."""
        # Start anywhere: workers that start together do not all contend for the first one.
        start = random.randrange(len(self.names))
        for i in range(len(self.names)):
            name = self.names[(start + i) % len(self.names)]
            path = f"{self.directory}/{name}"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise
            return Lease(name, fd)
        return None

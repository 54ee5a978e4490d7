"""Host uids for sandboxes, one per live sandbox, from a configured range.

The kernel keeps some quotas per host uid (inotify instances, pipe buffer pages, message queue
bytes, RLIMIT_NPROC): sandboxes that shared a uid would share them, and one run could use them
up for the next. So every sandbox a root worker starts runs as a uid of its own, leased from
SANDBOX_HOST_UIDS for as long as the sandbox lives. A lease is an exclusive flock on a file
named after the uid, in a root-only directory shared by every worker on the host (and by every
installation: they draw from one range without colliding). The kernel drops the lock when the
holder dies, so a crashed worker's uids come back by themselves.
"""

import contextlib
import fcntl
import os
import random

LEASE_DIR = "/run/integr8s-sandbox-uids"


class NoFreeUid(OSError):
    pass


def parse_range(text: str) -> range:
    """ "600000-600999" (or a single uid) as a range; ValueError with the rule when invalid."""
    first, _, last = text.strip().partition("-")
    try:
        low, high = int(first), int(last or first)
    except ValueError:
        raise ValueError(f"{text!r} is not FIRST-LAST (such as 600000-600999)") from None
    if low <= 0 or high >= 2**32 - 1 or high < low:
        raise ValueError(
            f"{text!r} must be unprivileged uids, first at most last (uid 0 would let the "
            "sandbox act as host root)"
        )
    return range(low, high + 1)


class Lease:
    """One uid, held until release() (or until the process holding it dies)."""

    def __init__(self, uid: int, fd: int):
        self.uid = uid
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the flock
            self._fd = -1


class UidPool:
    def __init__(self, uids: range, lease_dir: str = LEASE_DIR):
        self.uids = uids
        self.lease_dir = lease_dir
        os.makedirs(lease_dir, mode=0o700, exist_ok=True)

    def lease(self) -> Lease:
        """A uid no other live sandbox on this host holds (NoFreeUid when all are taken)."""
        # Start anywhere: workers that start together do not all contend for the first uid.
        start = random.randrange(len(self.uids))
        for i in range(len(self.uids)):
            uid = self.uids[(start + i) % len(self.uids)]
            fd = os.open(f"{self.lease_dir}/{uid}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise
            return Lease(uid, fd)
        raise NoFreeUid(
            f"all {len(self.uids)} sandbox uids ({self.uids.start}-{self.uids.stop - 1}) are in "
            "use on this host; widen SANDBOX_HOST_UIDS"
        )

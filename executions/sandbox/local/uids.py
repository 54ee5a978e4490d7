"""Host uids for sandboxes, one per live sandbox, from a configured range.

The kernel keeps some quotas per host uid (pipe buffer pages, pending signals, RLIMIT_NPROC):
sandboxes that shared a uid would share them, and one run could use them up for the next. So
every sandbox a root worker starts runs as a uid of its own, leased from SANDBOX_HOST_UIDS for
as long as the sandbox lives (leases.py). Every worker and every installation on the host draw
from one lease directory, so they never collide.
"""

from executions.sandbox.local.leases import Lease, LeasePool

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


class UidPool:
    def __init__(self, uids: range, lease_dir: str = LEASE_DIR):
        self.uids = uids
        self._pool = LeasePool(uids, lease_dir)

    def lease(self) -> Lease:
        """A uid no other live sandbox on this host holds (NoFreeUid when all are taken)."""
        lease = self._pool.try_lease()
        if lease is None:
            raise NoFreeUid(
                f"all {len(self.uids)} sandbox uids ({self.uids.start}-{self.uids.stop - 1}) "
                "are in use on this host; widen SANDBOX_HOST_UIDS"
            )
        return lease

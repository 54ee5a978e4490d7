"""Sandbox slots: at most one running sandbox per core this host gives them, across every
worker (and every installation) on the host. More would not finish sooner, only share the
cores, and a run's wall clock would then measure the others: a script needing 0.25 s of CPU
was killed at 5 s under load. A worker takes a slot before it claims a run and gives it back
when the run ends; one that finds none free leaves the run queued for a worker that has one.
"""

import os
import tempfile

from executions.sandbox.local.leases import Lease, LeasePool


def default_slots() -> int:
    """The CPUs this process may run on (its affinity, so a container's cpuset counts)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def slot_dir() -> str:
    """Shared by every worker on the host that runs as this uid (root: all of them)."""
    if os.geteuid() == 0:
        return "/run/integr8s-sandbox-slots"
    return os.path.join(tempfile.gettempdir(), f"integr8s-sandbox-slots-{os.geteuid()}")


class SlotPool:
    def __init__(self, slots: int, directory: str | None = None):
        self.slots = max(1, slots)
        self._pool = LeasePool(range(self.slots), directory or slot_dir())

    def reserve(self) -> Lease | None:
        """A free slot, or None when every one is taken on this host."""
        return self._pool.try_lease()

"""The local backend: each run in a bubblewrap sandbox, held by cgroups (or rlimits).

How one run goes:

1. A cgroup per run (memory + swap, pids, cpu quota; usage read back at the end) named after
   the run, under this installation's name: /sys/fs/cgroup/<controller>/<name>/<run> (v1) or
   /sys/fs/cgroup/<name>/<run> (v2) (cgroup.py). Where neither is writable, rlimits stand in
   (one warning per process).
2. A launcher joins that cgroup before it execs bubblewrap, so the sandbox and everything it
   starts are inside before the script runs (launcher.py). On v1, where joining costs ~10 ms,
   warm spares have done so ahead (spares.py).
3. The sandbox is never host root: a root worker's launchers give up root for a host uid of
   their own, leased for the sandbox's life (uids.py), after entering the stage that lets that
   uid reach interpreters under /root (stage.py).
4. bubblewrap with every namespace unshared, a default-deny seccomp filter (seccomp.py), only
   /usr and the interpreter's prefix bound read-only, a size-capped /tmp (command.py); Python
   without site, the prelude first (prelude.py).
5. supervise.py reads the output, holds the limits and reports Facts; classify.py decides.
"""

import atexit
import logging
import os
import re
import threading
import time
import uuid
from typing import Any

from executions.sandbox.classify import platform_failure, result
from executions.sandbox.contract import Backend, Events, RunResult, RunSpec
from executions.sandbox.local import command
from executions.sandbox.local.cgroup import Hierarchy, RunCgroup, find_hierarchy
from executions.sandbox.local.command import SANDBOX_UID
from executions.sandbox.local.launcher import Launcher, Teardown, spawn
from executions.sandbox.local.leases import Lease
from executions.sandbox.local.slots import SlotPool, default_slots
from executions.sandbox.local.spares import SPARE_PREFIX, SparePool
from executions.sandbox.local.stage import Stage, stage_root
from executions.sandbox.local.supervise import supervise
from executions.sandbox.local.uids import NoFreeUid, UidPool, parse_range

__all__ = ["SANDBOX_UID", "LocalBackend", "from_settings", "stage_root"]

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 1.0
DEFAULT_HOST_UIDS = "600000-600999"

_warned_rlimits = False
_warn_lock = threading.Lock()


def _warn_once(message: str) -> None:
    global _warned_rlimits
    with _warn_lock:
        if not _warned_rlimits:
            _warned_rlimits = True
            log.warning(message)


def _run_name(run_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "", run_id or "")[:64].lstrip(".")
    return name or uuid.uuid4().hex


def from_settings(settings: Any) -> "LocalBackend":
    return LocalBackend(
        name=settings.SANDBOX_NAME,
        host_uids=settings.SANDBOX_HOST_UIDS,
        slots=settings.SANDBOX_SLOTS or default_slots(),
    )


class LocalBackend(Backend):
    name = "local"

    def __init__(
        self,
        cgroup_root: str | None = "/sys/fs/cgroup",
        name: str = "integr8s",
        spares: int = 1,
        host_uids: str = DEFAULT_HOST_UIDS,
        seccomp: bool = True,
        slots: int = 0,
    ):
        """name: this installation's, for its cgroups (two installations on one host must
        differ). cgroup_root=None (or a path that is not a writable cgroup tree) means rlimits
        only. spares: launchers kept ready inside fresh cgroups (v1 only, where cgroups can be
        renamed). host_uids: the range a root worker's sandboxes take their host uids from.
        slots: how many sandboxes may run at once on this host, across all its workers
        (0: one per CPU this process may use)."""
        self.sandbox_name = name
        self.slots = SlotPool(slots or default_slots())
        self.uids: UidPool | None = None
        if os.geteuid() == 0:
            try:
                self.uids = UidPool(parse_range(host_uids))
            except ValueError as exc:
                raise ValueError(f"SANDBOX_HOST_UIDS: {exc}") from None
        self.hierarchy: Hierarchy | None = find_hierarchy(cgroup_root or "", name)
        if self.hierarchy is None:
            _warn_once(
                f"No writable cgroup tree (tried {cgroup_root!r}): the local sandbox limits "
                "memory, processes and CPU with rlimits only, which are per process and weaker."
            )
        self.mode = self.hierarchy.version if self.hierarchy else "rlimits"
        self.seccomp: bytes | None = None
        if seccomp:
            from executions.sandbox.local.seccomp import build_filter

            # Without cgroups a run is held to one process (threads allowed): its per-process
            # rlimits are then its limits (seccomp.SINGLE_PROCESS_DENY).
            self.seccomp = build_filter(single_process=self.mode == "rlimits")
        self.base_args = command.base_args()
        self.masks = command.proc_masks()
        self._stage: Stage | None = None  # the one new launchers enter
        self._stages: list[Stage] = []  # every one made (launchers may still be entering)
        self._stage_lock = threading.Lock()
        self._roots: dict[str, str | None] = {}  # prefix -> stage_root(), known so far
        self.spares = SparePool(spares if self.mode == "v1" else 0, self._make_spare)
        self.teardown = Teardown()
        if self.spares.per_recipe or self.uids:
            atexit.register(self.close)  # spares would leave empty cgroups behind

    def reserve(self) -> Lease | None:
        return self.slots.reserve()

    # --- staging (root only) -------------------------------------------------------------

    def _root_of(self, prefix: str) -> str | None:
        if self.uids is None:
            return None
        if prefix not in self._roots:
            uid = self.uids.uids.start  # no uid of the range owns anything: any will do
            self._roots[prefix] = stage_root(prefix, uid, uid)
        return self._roots[prefix]

    def _current_stage(self, root: str | None = None) -> Stage | None:
        """The stage new launchers enter, made (again) if it does not hold root yet."""
        if self.uids is None:
            return None
        with self._stage_lock:
            stage = self._stage
            if stage is None or not stage.alive() or not stage.covers(root):
                roots = tuple(stage.places) if stage is not None else ()
                if root is not None and root not in roots:
                    roots += (root,)
                stage = Stage(roots)
                self._stage = stage
                self._stages.append(stage)
            return stage

    # --- launchers -----------------------------------------------------------------------

    def _spawn(self, group: RunCgroup | None, spec: RunSpec) -> Launcher:
        prefix = spec.runtime.prefix
        root = self._root_of(prefix)
        stage = self._current_stage(root)
        source = prefix if stage is None else stage.source(prefix, root)
        args = self.sandbox_args(spec, source)
        lease = self._lease() if self.uids is not None else None
        try:
            return spawn(spec, args, group, self.seccomp, lease, stage.proc.pid if stage else None)
        except BaseException:
            if lease is not None:
                lease.release()
            raise

    def _lease(self) -> Lease:
        """A free host uid; if none is, once the runs that ended have given theirs back."""
        assert self.uids is not None
        try:
            return self.uids.lease()
        except NoFreeUid:
            self.settle()
            return self.uids.lease()

    def sandbox_args(self, spec: RunSpec, source: str) -> list[str]:
        """bubblewrap's options for spec, the interpreter's prefix bound from source."""
        return command.sandbox_args(self.base_args, self.masks, spec, source)

    def _make_spare(self, recipe: tuple) -> Launcher:
        runtime, limits = recipe
        assert self.hierarchy is not None
        group = self.hierarchy.create(f"{SPARE_PREFIX}{uuid.uuid4().hex}")
        try:
            return self._spawn(group, RunSpec(script="", runtime=runtime, limits=limits))
        except BaseException:
            group.remove()
            raise

    def _take(self, name: str, spec: RunSpec) -> Launcher:
        """A launcher for spec's recipe whose cgroup is named `name` and holds spec's limits:
        a spare that is ready, or a new one."""
        if self.hierarchy is None:
            return self._spawn(None, spec)
        recipe = (spec.runtime, spec.limits)
        root = self._root_of(spec.runtime.prefix)
        # A spare's sandbox was made before its run's input files were known: a run with
        # files starts its own (the ~10 ms the spare saves, for runs that bring files).
        spare = self.spares.take(recipe) if not spec.files else None
        while spare is not None:
            if (
                spare.proc.poll() is None
                and (spare.stage_pid is None or self._stage_covers(spare.stage_pid, root))
                and spare.wait_ready(READY_TIMEOUT_S)
            ):
                break
            spare.discard()
            spare = self.spares.take(recipe)
        if spare is not None:
            assert spare.group is not None
            try:
                try:
                    spare.group.rename(name)
                except FileExistsError:  # a crashed earlier attempt of the same run
                    self.hierarchy.attach(name).remove()
                    spare.group.rename(name)
                spare.group.apply_limits(spec.limits)
            except BaseException:
                spare.discard()
                raise
            return spare
        try:
            group = self.hierarchy.create(name, spec.limits)
        except FileExistsError:
            self.hierarchy.attach(name).remove()
            group = self.hierarchy.create(name, spec.limits)
        try:
            return self._spawn(group, spec)
        except BaseException:
            group.remove()
            raise

    def _stage_covers(self, stage_pid: int, root: str | None) -> bool:
        with self._stage_lock:
            stage = next((s for s in self._stages if s.proc.pid == stage_pid), None)
        return stage is not None and stage.covers(root)

    def settle(self) -> None:
        """Until the sandboxes of the runs that have returned are gone, their cgroups removed
        and their host uids given back (run() leaves that to a thread: see Teardown)."""
        self.teardown.settle()

    def close(self) -> None:
        """Stop the spare launchers, remove their cgroups, let the stages go."""
        self.settle()
        self.spares.close()
        with self._stage_lock:
            stages, self._stages, self._stage = self._stages, [], None
        for stage in stages:
            stage.close()

    # --- one run -------------------------------------------------------------------------

    def run(
        self, spec: RunSpec, cancel: threading.Event, events: Events | None = None
    ) -> RunResult:
        executable = spec.runtime.executable
        if not executable or not os.access(executable, os.X_OK):
            return platform_failure(
                spec,
                f"Python {spec.runtime.version} is not installed on this server "
                f"({executable or 'no interpreter configured'}).",
                self.name,
            )
        name = _run_name(spec.run_id)
        launcher = None
        try:
            started = time.monotonic()
            launcher = self._take(name, spec)
            launcher.deliver(spec.script.encode("utf-8", "surrogatepass"))
            feed = (spec.stdin or "").encode("utf-8", "surrogatepass")
            facts = supervise(spec, launcher, feed, started, cancel, events)
        except OSError as exc:
            log.exception("local sandbox failed to start run %s", name)
            return platform_failure(spec, f"The sandbox could not start: {exc}", self.name)
        finally:
            if launcher is not None:
                self.teardown.discard(launcher, name)
        if facts.platform_error:
            # Told by the launcher, nsenter or bubblewrap before the script ran; %r keeps
            # it one log line whatever it holds.
            log.error("local sandbox failed to start run %s: %r", name, facts.platform_error)
        facts.extra["limits_by"] = self.mode
        return result(spec, facts, self.name)

    # --- housekeeping --------------------------------------------------------------------

    def cleanup_stale(self, live_run_ids: set[str] | None = None) -> int:
        if self.hierarchy is None:
            return 0
        self.settle()  # a run's own teardown, not a leftover
        live = {_run_name(r) for r in (live_run_ids or ())}
        live |= {
            os.path.basename(next(iter(s.group.dirs.values())))
            for s in self.spares.held()
            if s.group is not None
        }
        removed = 0
        for name, group in self.hierarchy.leftovers().items():
            if name in live:
                continue
            # A spare of another live worker holds a waiting launcher; a dead worker's spare
            # launcher read end-of-file and left, so its cgroup is empty.
            if name.startswith(SPARE_PREFIX) and not group.is_empty():
                continue
            if group.remove():
                removed += 1
            else:
                log.error("could not remove leftover sandbox cgroup %s", name)
        if removed:
            log.info("removed %d leftover sandbox cgroup(s)", removed)
        return removed

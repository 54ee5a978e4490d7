"""Per-run cgroups for the local sandbox: cgroup v1 (one tree per controller) or v2 (unified).

A Hierarchy is found once per backend; it makes one RunCgroup per run. The run's launcher joins
its cgroup by writing "0" to each cgroup.procs in `join_paths` before it execs bubblewrap, so
nothing the script starts is ever outside it.
"""

import contextlib
import os
import signal
import time

from executions.limits import Limits

CPU_PERIOD_US = 100_000
# The CPU weight of this installation's runs together, against everything else on the host
# (the web server, the database: default weights 1024 on v1, 100 on v2). Under load the site
# keeps answering while runs queue; an idle host gives runs every core all the same.
RUNS_CPU_SHARES = 128  # v1 cpu.shares, 1/8 of the default
RUNS_CPU_WEIGHT = 12  # v2 cpu.weight, about 1/8 of the default


def cpu_cores(cpu_limit: str) -> float:
    """Kubernetes-style CPU ("1000m", "1.5", "2") as a number of cores; 1 when unparsable."""
    text = (cpu_limit or "").strip()
    try:
        cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        return 1.0
    return max(cores, 0.01)


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _stat_field(text: str, name: str) -> int:
    """The value of `name N` in a flat-keyed cgroup file (memory.events, cpu.stat ...)."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            with contextlib.suppress(ValueError):
                return int(value)
    return 0


def _pids(directory: str) -> list[int]:
    return [int(p) for p in _read(os.path.join(directory, "cgroup.procs")).split()]


def _rmdir(directory: str, budget_s: float = 3.0) -> bool:
    """Remove a cgroup directory; killed processes may take a moment to leave it."""
    give_up = time.monotonic() + budget_s
    pause = 0.0005
    while True:
        try:
            os.rmdir(directory)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() > give_up:
                return False
            for pid in _pids(directory):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


class RunCgroup:
    """The cgroup(s) of one run: limits set, usage and kill at hand."""

    version = ""

    def __init__(self, dirs: dict[str, str]):
        self.dirs = dirs  # controller (or "unified") -> directory

    @property
    def join_paths(self) -> list[str]:
        """The cgroup.procs files a process writes "0" to to join, one per distinct directory."""
        return [f"{d}/cgroup.procs" for d in dict.fromkeys(self.dirs.values())]

    def apply_limits(self, limits: Limits) -> None:
        raise NotImplementedError

    def is_empty(self) -> bool:
        return not _pids(next(iter(self.dirs.values())))

    def kill(self) -> None:
        raise NotImplementedError

    def usage(self) -> tuple[int | None, int | None, bool]:
        """(cpu_time_ms, peak_memory_kb, oom_killed)."""
        raise NotImplementedError

    def rename(self, name: str) -> None:
        """Give the group a new name (v1 only: a v2 group's processes cannot follow)."""
        raise NotImplementedError

    def cpu_ms(self) -> int | None:
        """CPU time used so far by every process of the run, in ms (one file read)."""
        raise NotImplementedError

    def pids(self) -> list[int]:
        return _pids(next(iter(self.dirs.values())))

    def process_limit_hits(self) -> int:
        """How often a fork or thread was refused at pids.max."""
        directory = self.dirs.get("pids") or self.dirs.get("unified")
        return _stat_field(_read(f"{directory}/pids.events"), "max") if directory else 0

    def remove(self) -> bool:
        self.kill()
        ok = True
        for directory in dict.fromkeys(self.dirs.values()):
            ok = _rmdir(directory) and ok
        return ok


class RunCgroupV1(RunCgroup):
    version = "v1"

    def apply_limits(self, limits: Limits) -> None:
        """Set the run's limits on a fresh group (memory limits only ever start unlimited)."""
        mem = self.dirs["memory"]
        _write(f"{mem}/memory.limit_in_bytes", str(limits.memory_bytes))
        # memsw (memory + swap) exists only with swap accounting; without it there is no
        # swap to escape to, so the plain limit is the whole story.
        with contextlib.suppress(FileNotFoundError):
            _write(f"{mem}/memory.memsw.limit_in_bytes", str(limits.memory_bytes))
        # bubblewrap's monitor and its pid-1 live in the group too: two more.
        _write(f"{self.dirs['pids']}/pids.max", str(limits.processes + 2))
        if "cpu" in self.dirs:
            quota = int(CPU_PERIOD_US * cpu_cores(limits.cpu_limit))
            _write(f"{self.dirs['cpu']}/cpu.cfs_quota_us", str(quota))

    def rename(self, name: str) -> None:
        """Give the group (and the processes already in it) a new name: v1 allows it."""
        renamed = {}
        for controller, directory in self.dirs.items():
            target = os.path.join(os.path.dirname(directory), name)
            if directory not in renamed:
                os.rename(directory, target)
                renamed[directory] = target
            self.dirs[controller] = renamed[directory]

    def kill(self) -> None:
        freezer = self.dirs.get("freezer")
        any_dir = next(iter(self.dirs.values()))
        for _ in range(100):
            pids = _pids(any_dir)
            if not pids:
                return
            # Frozen, a fork bomb cannot add processes while we go through the list.
            if freezer:
                with contextlib.suppress(OSError):
                    _write(f"{freezer}/freezer.state", "FROZEN")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if freezer:
                with contextlib.suppress(OSError):
                    _write(f"{freezer}/freezer.state", "THAWED")
            time.sleep(0.001)

    def cpu_ms(self) -> int | None:
        if "cpuacct" in self.dirs:
            with contextlib.suppress(ValueError):
                return int(_read(f"{self.dirs['cpuacct']}/cpuacct.usage")) // 1_000_000
        return None

    def usage(self) -> tuple[int | None, int | None, bool]:
        peak = None
        oom = False
        cpu = self.cpu_ms()
        if "memory" in self.dirs:
            mem = self.dirs["memory"]
            with contextlib.suppress(ValueError):
                peak = int(_read(f"{mem}/memory.max_usage_in_bytes")) // 1024
            control = _read(f"{mem}/memory.oom_control")
            if "oom_kill " in control:
                oom = _stat_field(control, "oom_kill") > 0
            else:  # kernels before 4.13 only count limit hits
                with contextlib.suppress(ValueError):
                    oom = int(_read(f"{mem}/memory.memsw.failcnt") or "0") > 0
        return cpu, peak, oom


class RunCgroupV2(RunCgroup):
    version = "v2"

    def apply_limits(self, limits: Limits) -> None:
        directory = self.dirs["unified"]
        _write(f"{directory}/memory.max", str(limits.memory_bytes))
        with contextlib.suppress(FileNotFoundError):
            _write(f"{directory}/memory.swap.max", "0")
        _write(f"{directory}/pids.max", str(limits.processes + 2))
        if os.path.exists(f"{directory}/cpu.max"):
            quota = int(CPU_PERIOD_US * cpu_cores(limits.cpu_limit))
            _write(f"{directory}/cpu.max", f"{quota} {CPU_PERIOD_US}")

    def kill(self) -> None:
        directory = self.dirs["unified"]
        if os.path.exists(f"{directory}/cgroup.kill"):
            with contextlib.suppress(OSError):
                _write(f"{directory}/cgroup.kill", "1")
        for _ in range(100):
            pids = _pids(directory)
            if not pids:
                return
            with contextlib.suppress(OSError):
                _write(f"{directory}/cgroup.freeze", "1")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                _write(f"{directory}/cgroup.freeze", "0")
            time.sleep(0.001)

    def cpu_ms(self) -> int | None:
        cpu_stat = _read(f"{self.dirs['unified']}/cpu.stat")
        return _stat_field(cpu_stat, "usage_usec") // 1000 if cpu_stat else None

    def usage(self) -> tuple[int | None, int | None, bool]:
        directory = self.dirs["unified"]
        cpu = self.cpu_ms()
        peak = None
        with contextlib.suppress(ValueError):
            peak = int(_read(f"{directory}/memory.peak")) // 1024
        oom = _stat_field(_read(f"{directory}/memory.events"), "oom_kill") > 0
        return cpu, peak, oom


class Hierarchy:
    """Where this installation's run cgroups live, and how to make one."""

    version = ""

    def __init__(self, bases: dict[str, str]):
        self.bases = bases  # controller (or "unified") -> this installation's directory

    def create(self, name: str, limits: Limits | None = None) -> RunCgroup:
        """A new, empty run cgroup (FileExistsError if one by that name is left over)."""
        raise NotImplementedError

    def leftovers(self) -> dict[str, RunCgroup]:
        """Run name -> cgroup, for every run cgroup present now."""
        names: set[str] = set()
        for base in self.bases.values():
            with contextlib.suppress(OSError):
                names.update(e.name for e in os.scandir(base) if e.is_dir())
        return {name: self.attach(name) for name in names}

    def attach(self, name: str) -> RunCgroup:
        raise NotImplementedError


class HierarchyV1(Hierarchy):
    version = "v1"
    REQUIRED = ("memory", "pids")
    OPTIONAL = ("cpu", "cpuacct", "freezer")

    @classmethod
    def find(cls, root: str, name: str) -> "HierarchyV1 | None":
        if not all(os.path.isdir(f"{root}/{c}") for c in cls.REQUIRED):
            return None
        bases = {}
        seen = set()
        for controller in cls.REQUIRED + cls.OPTIONAL:
            mount = f"{root}/{controller}"
            if not os.path.isdir(mount):
                continue
            real = os.path.realpath(mount)  # cpu and cpuacct are often one mount
            base = f"{real}/{name}"
            if real not in seen:
                try:
                    os.makedirs(base, exist_ok=True)
                    probe = f"{base}/.probe-{os.getpid()}"
                    os.mkdir(probe)
                    os.rmdir(probe)
                except OSError:
                    if controller in cls.REQUIRED:
                        return None
                    continue
                seen.add(real)
            bases[controller] = base
        if "cpu" in bases:
            with contextlib.suppress(OSError):
                _write(f"{bases['cpu']}/cpu.shares", str(RUNS_CPU_SHARES))
        return cls(bases)

    def attach(self, name: str) -> RunCgroup:
        return RunCgroupV1({c: f"{b}/{name}" for c, b in self.bases.items()})

    def create(self, name: str, limits: Limits | None = None) -> RunCgroup:
        group = self.attach(name)
        made = []
        try:
            for directory in dict.fromkeys(group.dirs.values()):
                os.mkdir(directory)
                made.append(directory)
            if limits is not None:
                group.apply_limits(limits)
        except BaseException:
            for directory in reversed(made):
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
            raise
        return group


class HierarchyV2(Hierarchy):
    version = "v2"

    @classmethod
    def find(cls, root: str, name: str) -> "HierarchyV2 | None":
        controllers = _read(f"{root}/cgroup.controllers").split()
        if not {"memory", "pids"} <= set(controllers):
            return None
        base = f"{root}/{name}"
        wanted = [c for c in ("memory", "pids", "cpu") if c in controllers]
        enable = " ".join(f"+{c}" for c in wanted)
        try:
            os.makedirs(base, exist_ok=True)
            _write(f"{root}/cgroup.subtree_control", enable)
            _write(f"{base}/cgroup.subtree_control", enable)
        except OSError:
            return None
        if "cpu" in wanted:
            with contextlib.suppress(OSError):
                _write(f"{base}/cpu.weight", str(RUNS_CPU_WEIGHT))
        return cls({"unified": base})

    def attach(self, name: str) -> RunCgroup:
        return RunCgroupV2({"unified": f"{self.bases['unified']}/{name}"})

    def create(self, name: str, limits: Limits | None = None) -> RunCgroup:
        group = self.attach(name)
        directory = group.dirs["unified"]
        os.mkdir(directory)
        try:
            if limits is not None:
                group.apply_limits(limits)
        except BaseException:
            with contextlib.suppress(OSError):
                os.rmdir(directory)
            raise
        return group


def find_hierarchy(root: str, name: str) -> Hierarchy | None:
    """The writable cgroup hierarchy under root (v2 first, then v1), or None."""
    if not root or not os.path.isdir(root):
        return None
    return HierarchyV2.find(root, name) or HierarchyV1.find(root, name)

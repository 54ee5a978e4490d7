"""What `make bench` measured, and docs/performance.md with its plots made from it.

Every figure sits beside a baseline taken in the same run (this VM's speed drifts by ±50 %
between runs), so the report leads with ratios. Not a command: the leading underscore keeps
Django from listing it.
"""

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure as Plot

from executions.limits import Limits
from executions.management.commands.bench_sandbox import TARGET_RATIO as SANDBOX_TARGET
from executions.management.commands.bench_sandbox import Figures

LATENCY_TARGET = 1.5  # wait=true median / bare interpreter median (issue 10)
THROUGHPUT_TARGET = 0.5  # share of two bare interpreters back to back (issue 10)
MIB = 1024 * 1024


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**not met**"


@dataclass
class Paired:
    """One way to run the script, and the bare interpreter timed between its runs."""

    what: str
    times: list[float]
    bare: list[float]
    short: str = ""  # its name on the plots

    @property
    def label(self) -> str:
        return self.short or self.what.replace("`", "")

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def bare_median(self) -> float:
        return statistics.median(self.bare)

    @property
    def ratio(self) -> float:
        return self.median / self.bare_median

    def row(self) -> str:
        t = self.times
        return (
            f"| {self.what} | {ms(self.median)} | {ms(pct(t, 0.95))} | {ms(pct(t, 0.99))} "
            f"| {ms(self.bare_median)} | **{self.ratio:.2f}×** |"
        )


@dataclass
class Level:
    clients: int
    rate: float  # runs/s through the API
    ceiling: float  # runs/s of two bare interpreters back to back, measured right after

    @property
    def share(self) -> float:
        return self.rate / self.ceiling


@dataclass
class Reads:
    path: str
    idle: list[float]
    loaded: list[float]


@dataclass
class Memory:
    """RSS in bytes, at seconds since the load began."""

    t: float
    web: int  # gunicorn's master and workers
    worker: int  # the runworker process
    sandboxes: int  # the worker's descendants: running and warm sandboxes


@dataclass
class Service:
    name: str  # "SQLite", "PostgreSQL"
    wait: Paired
    poll: Paired
    levels: list[Level] = field(default_factory=list)
    reads: list[Reads] = field(default_factory=list)
    idle: Memory | None = None
    memory: list[Memory] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # requests that failed (timed all the same)
    server: str = ""  # the web server's command line

    def best(self) -> Level:
        return max(self.levels, key=lambda level: level.share)


@dataclass
class Sample:
    """One sandboxed run of an import script."""

    seconds: float  # LocalBackend.run, from the call to its result
    wall_ms: int  # the run's own wall time (what the wall-time limit is held to)
    cpu_ms: int
    peak_kb: int  # the run's cgroup peak: the page cache it read in counts too


@dataclass
class ImportCost:
    what: str
    script: str
    cold: list[Sample] = field(default_factory=list)
    warm: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # runs that did not complete, why

    def over(self, samples: list[Sample], limit: Limits) -> list[str]:
        """How samples exceed limit (p95 of wall and CPU time, the highest peak), in words."""
        if not samples:
            return ["no run completed"]
        out = []
        peak = max(s.peak_kb for s in samples) * 1024
        if peak > limit.memory_bytes:
            out.append(f"peak {peak / MIB:.0f} MiB > {limit.memory_mib} MiB")
        wall = pct([s.wall_ms for s in samples], 0.95) / 1000
        if wall > limit.wall_time_s:
            out.append(f"wall p95 {wall:.1f} s > {limit.wall_time_s:g} s")
        cpu = pct([s.cpu_ms for s in samples], 0.95) / 1000
        if cpu > limit.cpu_time_s:
            out.append(f"CPU p95 {cpu:.1f} s > {limit.cpu_time_s:g} s")
        return out

    def verdict(self, limit: Limits) -> str:
        words = []
        for name, samples in (("cold", self.cold), ("warm", self.warm)):
            over = self.over(samples, limit)
            words.append(f"{name} {'**no**: ' + ', '.join(over) if over else 'yes'}")
        return "; ".join(words)


@dataclass
class Imports:
    """Importing the package set's big packages through the local sandbox (issue 13)."""

    version: str  # the runtime's
    site: str  # its package set, on the host
    evicted: int  # files dropped from the page cache before each cold run
    defaults: Limits  # what a run gets unless it asks: each row is judged against these
    measured_under: Limits  # the operator's maxima, so that the whole cost shows
    costs: list[ImportCost] = field(default_factory=list)  # the first is the baseline


@dataclass
class Report:
    date: str
    machine: list[str]  # lines
    command: str
    bare_cmd: str
    poll_s: float
    load_clients: int
    sandbox: Figures | None = None  # None when --only left it out
    imports: Imports | None = None
    services: list[Service] = field(default_factory=list)
    alternatives: list[Paired] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # what was not measured, and why


def sandbox_rows(report: Report) -> list[Paired]:
    if report.sandbox is None:
        return []
    bare = " ".join(report.sandbox.bare_cmd[1:])
    return [
        Paired(
            f"sandbox, {label} (`LocalBackend.run`, `{bare}`)", f.box, f.bare, f"sandbox, {label}"
        )
        for label, f in report.sandbox.figures.items()
    ]


def service_rows(report: Report) -> list[Paired]:
    return [row for s in report.services for row in (s.wait, s.poll)]


def targets(report: Report) -> list[str]:
    rows = []
    if report.sandbox is not None:
        warm = report.sandbox.figures["warm"]
        rows.append(
            f"| sandbox, warm (the default), median ≤ {SANDBOX_TARGET}× bare `pass` "
            f"(bench_sandbox's own) | {warm.ratio:.2f}× ({ms(statistics.median(warm.box))} vs "
            f"{ms(statistics.median(warm.bare))}) | {verdict(warm.ratio <= SANDBOX_TARGET)} |"
        )
    for s in report.services:
        rows.append(
            f"| `wait=true` median ≤ {LATENCY_TARGET}× bare, {s.name} | {s.wait.ratio:.2f}× "
            f"({ms(s.wait.median)} vs {ms(s.wait.bare_median)}) "
            f"| {verdict(s.wait.ratio <= LATENCY_TARGET)} |"
        )
    for s in report.services:
        best = s.best()
        clients = f"{best.clients} client{'s' if best.clients > 1 else ''}"
        rows.append(
            f"| throughput ≥ {THROUGHPUT_TARGET:.0%} of two bare interpreters, {s.name} "
            f"| {best.share:.0%} at {clients} ({best.rate:.1f} vs "
            f"{best.ceiling:.1f} runs/s) | {verdict(best.share >= THROUGHPUT_TARGET)} |"
        )
    return rows


def markdown(report: Report, plots: dict[str, str]) -> str:
    out = [
        "# Performance",
        "",
        f"Written by `{report.command}` on {report.date}, in one run on this machine:",
        "",
        *[f"- {line}" for line in report.machine],
        "",
        "**This VM's speed drifts by ±50 % between runs.** Read the ratios: each figure is set "
        "against a baseline measured in the same run, interleaved with it where it can be, "
        "never against a figure from another run. The baseline is the bare interpreter "
        f"(`{report.bare_cmd}`) unless a row says otherwise.",
        "",
    ]
    if report.sandbox is not None or report.services:
        out += [
            "## Targets (issue 10)",
            "",
            "| target | this run | verdict |",
            "|---|---|---|",
            *targets(report),
            "",
            "Throughput is judged at the best of the client counts below; the table shows them "
            "all.",
            "",
        ]
    if sandbox_rows(report) or report.services or report.alternatives:
        out += one_run_section(report, plots)
    if report.imports is not None:
        out += imports_section(report.imports, plots)
    if report.services:
        out += throughput_section(report, plots) + reads_section(report, plots)
        out += memory_section(report, plots)
    failed = [
        f"- {s.name}: {len(s.errors)}, e.g. {s.errors[-1]}" for s in report.services if s.errors
    ]
    if failed:
        out += ["## Failed requests (their times count in the figures)", "", *failed, ""]
    if report.skipped:
        out += ["## Not measured in this run", "", *[f"- {why}" for why in report.skipped], ""]
    out += how_measured(report)
    return "\n".join(out)


def one_run_section(report: Report, plots: dict[str, str]) -> list[str]:
    seccomp = []
    if report.sandbox is not None:
        seccomp = [
            f"The seccomp filter costs {report.sandbox.seccomp_cost_s * 1000:+.1f} ms a cold "
            "run (median with it minus median without, same run). Limits enforced by "
            f"{report.sandbox.mode}.",
            "",
        ]
    return [
        "## One run, each way, against the bare interpreter",
        "",
        "The sandbox rows run `pass` (as `manage.py bench_sandbox` does); the rest run "
        '`print("hi")`. End to end is from the request to its answer, over a kept-alive '
        f"connection; submit+poll is `POST /api/v1/execute`, then `GET /api/v1/result/<id>` "
        f"every {report.poll_s * 1000:.0f} ms until the run has ended.",
        "",
        "| how | median | p95 | p99 | bare median (same run) | ratio |",
        "|---|---|---|---|---|---|",
        *[row.row() for row in sandbox_rows(report)],
        *[row.row() for row in service_rows(report)],
        *[row.row() for row in report.alternatives],
        "",
        *seccomp,
        *[f"![{name}]({path})" for name, path in plots.items() if name in ("ratios", "latency")],
        "",
    ]


def imports_section(found: Imports, plots: dict[str, str]) -> list[str]:
    d, m = found.defaults, found.measured_under
    base = found.costs[0]
    # p50 as pct() takes it everywhere in this table, so the columns agree with each other.
    base_p50 = pct([s.seconds for s in base.warm], 0.5) if base.warm else 0.0
    rows = []
    for cost in found.costs:
        cells = []
        for samples in (cost.cold, cost.warm):
            t = [s.seconds for s in samples]
            cells.append(f"{ms(pct(t, 0.5))} / {ms(pct(t, 0.95))}" if t else "–")
        warm = [s.seconds for s in cost.warm]
        extra = f"{(pct(warm, 0.5) - base_p50) * 1000:+.0f} ms" if warm else "–"
        cpu = f"{pct([s.cpu_ms for s in cost.warm], 0.5)} ms" if warm else "–"
        peaks = " / ".join(
            f"{max(s.peak_kb for s in samples) / 1024:.0f} MiB" if samples else "–"
            for samples in (cost.cold, cost.warm)
        )
        failed = f" ({len(cost.failures)} failed: {cost.failures[-1]})" if cost.failures else ""
        rows.append(
            f"| `{cost.what}` | {cells[0]} | {cells[1]} | {extra} | {cpu} | {peaks} "
            f"| {cost.verdict(d)}{failed} |"
        )
    return [
        f"## Importing packages (issue 13), Python {found.version}",
        "",
        "What a script that imports the big packages costs through the local sandbox, against "
        f"`{base.script}` in the same run: cold is the first run after each of the package "
        f"set's {found.evicted} files was dropped from the page cache, warm is the same script "
        "run again.",
        "",
        "| script | cold p50 / p95 | warm p50 / p95 | warm p50 − baseline | CPU, warm p50 "
        f"| peak memory, cold / warm | within the defaults ({d.memory_mib} MiB, "
        f"{d.wall_time_s:g} s wall, {d.cpu_time_s:g} s CPU)? |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Measured under the operator's maxima ({m.memory_mib} MiB, {m.wall_time_s:g} s wall, "
        f"{m.cpu_time_s:g} s CPU) so that the whole cost shows; the last column holds each "
        "figure to the defaults a run gets when it asks for nothing. Peak memory is the run's "
        "cgroup peak, with the page cache it read in (which a tighter limit could reclaim).",
        "",
        *([f"![imports]({plots['imports']})", ""] if "imports" in plots else []),
    ]


def how_measured(report: Report) -> list[str]:
    return [
        "## How it is measured",
        "",
        "- The service is `manage.py serve`, what `make run` starts (gunicorn and one worker), "
        "on a scratch SQLite file and on a scratch PostgreSQL database, one after the other, "
        "with the submission throttles raised through the environment. The worker runs at most "
        "one sandbox per core at once (`SANDBOX_SLOTS`: slots shared by every installation on "
        "the host, other people's test runs included). Clients are threads in "
        "the bench's own process, anonymous, each with its own kept-alive connection; they "
        "share the two cores with the site.",
        *[f"- {s.name}: the web server ran as `{s.server}`." for s in report.services if s.server],
        "- Throughput: each client count sends the same number of `wait=true` runs back to "
        "back; right after it, two bare interpreters run the same number back to back (the "
        "ceiling of two cores).",
        f"- Reads: `GET` of each endpoint in turn, first with the site idle, then while "
        f"{report.load_clients} clients keep `wait=true` runs going.",
        "- Memory: `VmRSS` from `/proc/<pid>/status` every 0.1 s from the first throughput "
        "level to the end of the reads (shared pages count once per process).",
        "- A container per run: `podman run --rm --network none --memory 128m IMAGE python3 "
        "-I -S -c 'print(\"hi\")'`. A pod per run: the kubernetes backend's own Pod and "
        "ConfigMap for the script, `podman kube play --network none`, `podman wait`, its log "
        "read and classified by the backend, `podman kube down` (as tests/k8s/podman.py does).",
        "- Importing packages: `LocalBackend.run` as the worker runs it (a warm spare, the "
        "seccomp filter), the scripts interleaved round by round. Cold: before each cold run "
        "every file of the package set is opened and given `posix_fadvise(POSIX_FADV_DONTNEED)`"
        ", which needs no root and loses nothing but the cache (pages another process has "
        "mapped, say a numpy in someone's running sandbox, stay); the standard library is not "
        "evicted. Dropping the whole page cache would need root and slow everyone on the host.",
        "",
    ]


def throughput_section(report: Report, plots: dict[str, str]) -> list[str]:
    head = "| clients |" + "".join(f" {s.name} runs/s | ceiling | share |" for s in report.services)
    rows = []
    for i, level in enumerate(report.services[0].levels):
        cells = ""
        for s in report.services:
            lv = s.levels[i]
            cells += f" {lv.rate:.1f} | {lv.ceiling:.1f} | {lv.share:.0%} |"
        rows.append(f"| {level.clients} |{cells}")
    bound = []
    if report.sandbox is not None and report.sandbox.cpu_s:
        cpu = report.sandbox.cpu_s
        bound = [
            f"What the sandbox alone allows: a `pass` run costs the host "
            f"{cpu['sandbox'] * 1000:.1f} ms of CPU through the sandbox (warm: the next spare's "
            f"start counts) against {cpu['bare'] * 1000:.1f} ms bare (all cores and the "
            "kernel's work, from /proc/stat, same run). With every core busy with runs and "
            "nothing else (no web server, database or worker), a sandbox per run reaches at "
            f"most **{report.sandbox.throughput_bound:.0%}** of two bare interpreters' "
            "throughput.",
            "",
        ]
    return [
        "## Throughput",
        "",
        *bound,
        head,
        "|---|" + "---|---|---|" * len(report.services),
        *rows,
        "",
        *([f"![throughput]({plots['throughput']})", ""] if "throughput" in plots else []),
    ]


def reads_section(report: Report, plots: dict[str, str]) -> list[str]:
    rows = []
    for s in report.services:
        for r in s.reads:
            idle = " / ".join(ms(pct(r.idle, q)) for q in (0.5, 0.95, 0.99))
            loaded = " / ".join(ms(pct(r.loaded, q)) for q in (0.5, 0.95, 0.99))
            rows.append(
                f"| `{r.path}` | {s.name} | {idle} | {loaded} "
                f"| {statistics.median(r.loaded) / statistics.median(r.idle):.1f}× / "
                f"{pct(r.loaded, 0.95) / pct(r.idle, 0.95):.1f}× |"
            )
    return [
        f"## API reads while runs queue ({report.load_clients} clients running scripts)",
        "",
        "| endpoint | database | idle p50 / p95 / p99 | loaded p50 / p95 / p99 "
        "| loaded ÷ idle, p50 / p95 |",
        "|---|---|---|---|---|",
        *rows,
        "",
        *([f"![reads]({plots['reads']})", ""] if "reads" in plots else []),
    ]


def memory_section(report: Report, plots: dict[str, str]) -> list[str]:
    rows = []
    for s in report.services:
        if s.idle is None or not s.memory:
            continue
        for label, attr in (
            ("web (gunicorn)", "web"),
            ("worker", "worker"),
            ("sandboxes (worker's children)", "sandboxes"),
        ):
            idle = getattr(s.idle, attr)
            seen = [getattr(m, attr) for m in s.memory]
            peak = max(seen)
            ratio = f"{peak / idle:.2f}×" if idle else "–"
            rows.append(
                f"| {label} | {s.name} | {idle / MIB:.0f} MiB | "
                f"{statistics.median(seen) / MIB:.0f} MiB | {peak / MIB:.0f} MiB | {ratio} |"
            )
    return [
        "## Memory under load (RSS)",
        "",
        "| process | database | idle | under load, median | peak | peak ÷ idle |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        *([f"![memory]({plots['memory']})", ""] if "memory" in plots else []),
    ]


# --- plots -----------------------------------------------------------------------------------


def write(report: Report, folder: Path) -> Path:
    """docs/performance.md and its PNGs in folder/performance/; the path of the Markdown."""
    images = folder / "performance"
    images.mkdir(parents=True, exist_ok=True)
    plots: dict[str, Plot] = {}
    if sandbox_rows(report) or report.services or report.alternatives:
        plots |= {"ratios": plot_ratios(report), "latency": plot_latency(report)}
    if report.imports is not None and any(c.warm or c.cold for c in report.imports.costs):
        plots["imports"] = plot_imports(report.imports)
    if report.services:
        plots |= {
            "throughput": plot_throughput(report),
            "reads": plot_reads(report),
            "memory": plot_memory(report),
        }
    links = {}
    for name, plot in plots.items():
        plot.savefig(images / f"{name}.png", dpi=100, metadata={"Software": None})
        links[name] = f"performance/{name}.png"
    path = folder / "performance.md"
    path.write_text(markdown(report, links))
    return path


def plot_ratios(report: Report) -> Plot:
    rows = sandbox_rows(report) + service_rows(report) + report.alternatives
    plot = Plot(figsize=(9, 0.45 * len(rows) + 1.4), layout="constrained")
    ax = plot.subplots()
    labels = [r.label for r in rows]
    ratios = [r.ratio for r in rows]
    ax.barh(labels, ratios, color="tab:blue")
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1, color="black", linewidth=0.8)
    ax.axvline(LATENCY_TARGET, color="tab:red", linestyle="--", label=f"target {LATENCY_TARGET}×")
    for y, r in enumerate(rows):
        ax.text(r.ratio, y, f" {r.ratio:.2f}× ({ms(r.median)})", va="center", fontsize=8)
    ax.set_xlim(0.5, max(ratios) * 8)
    ax.set_xlabel("median ÷ bare interpreter's median, same run (log scale)")
    ax.set_title("One trivial run, each way")
    ax.legend(loc="lower right")
    return plot


def plot_latency(report: Report) -> Plot:
    rows = service_rows(report)
    plot = Plot(figsize=(9, 4), layout="constrained")
    ax = plot.subplots()
    if not rows:
        ax.set_title("no service measured")
        return plot
    bare = rows[0].bare
    groups = [("bare interpreter", bare)] + [(r.label, r.times) for r in rows]
    width = 0.27
    for i, (q, name) in enumerate(((0.5, "p50"), (0.95, "p95"), (0.99, "p99"))):
        xs = [g + (i - 1) * width for g in range(len(groups))]
        ax.bar(xs, [pct(times, q) * 1000 for _, times in groups], width, label=name)
    ax.set_xticks(range(len(groups)), [name for name, _ in groups], rotation=15, ha="right")
    ax.tick_params(axis="x", labelsize=8)
    ax.set_ylabel("ms, end to end")
    ax.set_title('print("hi"): latency percentiles (bare: the first service\'s baseline)')
    ax.legend()
    return plot


def plot_throughput(report: Report) -> Plot:
    plot = Plot(figsize=(9, 4), layout="constrained")
    left, right = plot.subplots(1, 2)
    for s in report.services:
        clients = [lv.clients for lv in s.levels]
        left.plot(clients, [lv.rate for lv in s.levels], marker="o", label=f"{s.name}, API")
        left.plot(
            clients,
            [lv.ceiling for lv in s.levels],
            linestyle=":",
            label=f"two bare interpreters (during {s.name})",
        )
        right.plot(clients, [lv.share * 100 for lv in s.levels], marker="o", label=s.name)
    right.axhline(THROUGHPUT_TARGET * 100, color="tab:red", linestyle="--", label="target")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_xticks([1, 2, 4, 8, 16], ["1", "2", "4", "8", "16"])
        ax.legend(fontsize=8)
    left.set_ylabel("runs/s")
    left.set_ylim(bottom=0)
    right.set_ylabel("% of two bare interpreters")
    right.set_ylim(0, 100)
    plot.suptitle('Throughput, wait=true, print("hi")')
    return plot


def plot_reads(report: Report) -> Plot:
    plot = Plot(figsize=(9, 4), layout="constrained")
    ax = plot.subplots()
    labels, idle, loaded = [], [], []
    for s in report.services:
        for r in s.reads:
            for q in (0.5, 0.95):
                labels.append(f"{r.path.rsplit('/', 1)[-1]}\n{s.name} p{round(q * 100)}")
                idle.append(pct(r.idle, q) * 1000)
                loaded.append(pct(r.loaded, q) * 1000)
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], idle, 0.4, label="idle")
    ax.bar([x + 0.2 for x in xs], loaded, 0.4, label=f"{report.load_clients} clients running")
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set_ylabel("ms")
    ax.set_title("API reads while runs queue")
    ax.legend()
    return plot


def plot_memory(report: Report) -> Plot:
    plot = Plot(figsize=(9, 4), layout="constrained")
    axes: list[Axes] = list(plot.subplots(1, len(report.services), sharey=True, squeeze=False)[0])
    for ax, s in zip(axes, report.services, strict=True):
        ts = [m.t for m in s.memory]
        for attr, label in (("web", "web"), ("worker", "worker"), ("sandboxes", "sandboxes")):
            ax.plot(ts, [getattr(m, attr) / MIB for m in s.memory], label=label)
        ax.set_title(s.name)
        ax.set_xlabel("s since the load began")
        ax.set_ylim(bottom=0)
    axes[0].set_ylabel("RSS, MiB")
    axes[0].legend()
    plot.suptitle("Memory under load")
    return plot


def plot_imports(found: Imports) -> Plot:
    costs = found.costs
    plot = Plot(figsize=(9, 0.5 * len(costs) + 1.8), layout="constrained")
    left, right = plot.subplots(1, 2, sharey=True)
    ys = range(len(costs))
    for offset, name in ((-0.2, "cold"), (0.2, "warm")):
        runs = [getattr(c, name) for c in costs]
        left.barh(
            [y + offset for y in ys],
            [pct([s.seconds for s in r], 0.5) if r else 0 for r in runs],
            0.4,
            xerr=[
                [0 for _ in runs],
                [
                    pct([s.seconds for s in r], 0.95) - pct([s.seconds for s in r], 0.5) if r else 0
                    for r in runs
                ],
            ],  # fmt: skip
            label=f"{name} p50 (whisker: p95)",
        )
        right.barh(
            [y + offset for y in ys],
            [max(s.peak_kb for s in r) / 1024 if r else 0 for r in runs],
            0.4,
            label=f"{name}, highest",
        )
    left.axvline(found.defaults.wall_time_s, color="tab:red", linestyle="--",
                 label=f"default wall limit {found.defaults.wall_time_s:g} s")  # fmt: skip
    right.axvline(found.defaults.memory_mib, color="tab:red", linestyle="--",
                  label=f"default memory limit {found.defaults.memory_mib} MiB")  # fmt: skip
    left.set_yticks(list(ys), [c.what for c in costs], fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("s, LocalBackend.run")
    right.set_xlabel("peak MiB (cgroup, with page cache)")
    for ax in (left, right):
        ax.legend(fontsize=7, loc="lower right")
    plot.suptitle(f"Importing packages in the sandbox, Python {found.version}")
    return plot

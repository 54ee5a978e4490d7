"""`make bench` runs end to end and writes its report (tiny run counts: no timing is judged)."""

import os
import shutil
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from executions import runtimes
from executions.limits import Limits
from executions.management.commands import _bench_report, bench
from executions.sandbox.local.command import site_dir


def postgres_reachable() -> bool:
    try:
        import psycopg

        psycopg.connect(f"{bench.POSTGRES}/postgres", connect_timeout=2).close()
    except Exception:
        return False
    return True


def test_percentiles():
    assert bench.pct([5, 1, 3, 2, 4], 0.5) == 3
    assert bench.pct([5, 1, 3, 2, 4], 0.95) == 5
    assert bench.pct([7], 0.95) == 7


def test_the_podman_image_is_read_from_the_setup_script(monkeypatch, tmp_path):
    script = tmp_path / "podman-setup.sh"
    script.write_text("#!/bin/sh\nIMAGE=${INTEGR8S_PODMAN_IMAGE:-localhost/renamed:1}\n")
    monkeypatch.setattr(bench, "PODMAN_SETUP", script)
    monkeypatch.setattr(bench.shutil, "which", lambda name: "/usr/bin/podman")
    asked = []

    def exists(argv, timeout):
        asked.append(argv)
        return type("Done", (), {"returncode": 1})()

    monkeypatch.setattr(bench.subprocess, "run", exists)

    image, why = bench.podman_image()

    assert asked == [["podman", "image", "exists", "localhost/renamed:1"]]
    assert (image, why) == ("", "the image localhost/renamed:1 is missing (run "
                                ".ci/podman-setup.sh as root)")  # fmt: skip


def test_without_podman_the_reason_is_given(monkeypatch):
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)

    assert bench.podman_image() == ("", "podman is not installed (.ci/podman-setup.sh installs it)")


def test_a_throughput_level_is_judged_against_its_own_ceiling():
    level = _bench_report.Level(clients=4, rate=30.0, ceiling=100.0)

    assert level.share == pytest.approx(0.3)


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap is not installed")
@pytest.mark.skipif(not postgres_reachable(), reason="no PostgreSQL on 127.0.0.1:5432")
def test_bench_writes_the_report_with_every_figure_beside_its_baseline(tmp_path):
    out = StringIO()

    call_command(
        "bench",
        runs=3,
        throughput_runs=4,
        podman_runs=1,
        clients="1,2",
        load_clients=2,
        output=str(tmp_path),
        stdout=out,
    )

    text = out.getvalue()
    assert "service latency" in text and "ratio" in text and "bare" in text
    assert "throughput" in text and "runs/s" in text
    report = (tmp_path / "performance.md").read_text()
    for heading in ("## Targets", "## Throughput", "## API reads", "## Memory"):
        assert heading in report
    assert "SQLite" in report and "PostgreSQL" in report
    assert "±50 %" in report and "nproc" in report
    assert "PASS" in report or "not met" in report
    assert "CPU a run" in text and "What the sandbox alone allows" in report
    assert "podman" in report  # measured, or skipped with a reason
    for name in ("ratios", "latency", "throughput", "reads", "memory"):
        assert (tmp_path / "performance" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_asgi_application_loads():
    from integr8s.asgi import application

    assert callable(application)


def test_only_names_its_sections():
    assert bench.sections("") == list(bench.SECTIONS)
    assert bench.sections("imports, sandbox") == ["imports", "sandbox"]
    with pytest.raises(CommandError, match="no section nope; there are sandbox, imports"):
        bench.sections("imports,nope")


def test_evicting_a_folder_drops_each_file_from_the_page_cache(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "b.so").write_bytes(b"\0" * 8192)
    (tmp_path / "link").symlink_to("/etc/passwd")  # outside: not followed

    assert bench.evict(tmp_path) == 2


def test_without_a_package_set_the_imports_are_skipped_with_the_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "site_dir", lambda version: str(tmp_path / "none" / version))
    out = StringIO()

    call_command("bench", only="imports", output=str(tmp_path), stdout=out)

    assert "skipped importing packages: Python" in out.getvalue()
    assert "build_runtimes --default" in out.getvalue()
    report = (tmp_path / "performance.md").read_text()
    assert "has no package set" in report and "left out by --only: sandbox," in report
    assert "## Importing packages" not in report and "## Targets" not in report


def test_an_import_over_the_defaults_is_judged_so():
    defaults = Limits()  # 128 MiB, 5 s wall, 5 s CPU
    cost = _bench_report.ImportCost("import pandas", "import pandas")
    cost.cold = [_bench_report.Sample(6.2, 6100, 900, 150 * 1024)]
    cost.warm = [_bench_report.Sample(0.9, 850, 700, 90 * 1024)]

    assert (
        cost.verdict(defaults)
        == "cold **no**: peak 150 MiB > 128 MiB, wall p95 6.1 s > 5 s; warm yes"
    )


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap is not installed")
def test_the_imports_section_alone_times_each_script_cold_and_warm(tmp_path):
    if not os.path.isdir(site_dir(runtimes.get(None, "local").version)):
        pytest.skip("no package set for the default version (manage.py build_runtimes)")
    out = StringIO()

    call_command("bench", only="imports", import_runs=1, output=str(tmp_path), stdout=out)

    text = out.getvalue()
    for what, _ in bench.IMPORT_SCRIPTS:
        assert f"  {what}: cold p50" in text and "; warm p50" in text
    assert "run(s) failed" not in text
    report = (tmp_path / "performance.md").read_text()
    assert "## Importing packages (issue 13)" in report and "| `import pandas` |" in report
    assert "within the defaults" in report and "posix_fadvise" in report
    assert (tmp_path / "performance" / "imports.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "performance" / "ratios.png").exists()  # its section did not run

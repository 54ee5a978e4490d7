"""`make bench` runs end to end and writes its report (tiny run counts: no timing is judged)."""

import shutil
from io import StringIO

import pytest
from django.core.management import call_command

from executions.management.commands import _bench_report, bench


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
    assert "podman" in report  # measured, or skipped with a reason
    for name in ("ratios", "latency", "throughput", "reads", "memory"):
        assert (tmp_path / "performance" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_asgi_application_loads():
    from integr8s.asgi import application

    assert callable(application)

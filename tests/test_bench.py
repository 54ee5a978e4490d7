"""`make bench` runs end to end and prints its figures (tiny run counts: no timing is judged)."""

import shutil
from io import StringIO

import pytest
from django.core.management import call_command

from executions.management.commands import bench


def postgres_reachable() -> bool:
    try:
        import psycopg

        psycopg.connect(bench.DEFAULT_DB.rsplit("/", 1)[0] + "/postgres", connect_timeout=2).close()
    except Exception:
        return False
    return True


def test_percentiles():
    assert bench.pct([5, 1, 3, 2, 4], 0.5) == 3
    assert bench.pct([5, 1, 3, 2, 4], 0.95) == 5
    assert bench.pct([7], 0.95) == 7


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap is not installed")
@pytest.mark.skipif(not postgres_reachable(), reason="no PostgreSQL on 127.0.0.1:5432")
def test_bench_prints_latency_and_throughput_against_the_bare_interpreter():
    out = StringIO()

    call_command("bench", runs=3, throughput_runs=8, stdout=out)

    text = out.getvalue()
    assert "ratio" in text and "bare" in text
    assert "service latency" in text and "median" in text and "p95" in text
    assert "service throughput" in text and "runs/s" in text
    assert ("PASS" in text) or ("FAIL" in text)


def test_asgi_application_loads():
    from integr8s.asgi import application

    assert callable(application)

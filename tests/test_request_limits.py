"""Limits per request (API `limits`, the editor's fields), within the operator's maxima."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from executions import limits
from executions.limits import KIB, MIB
from executions.models import Execution

pytestmark = pytest.mark.django_db

EXECUTE = "/api/v1/execute"


@pytest.fixture
def client():
    return APIClient()


def test_the_default_maxima_are_sensible(settings):
    assert settings.LIMIT_MAXIMA == {
        "memory_mb": 512,
        "wall_time_s": 30,
        "cpu_time_s": 30,
        "output_kb": 4096,
    }


def test_a_run_is_held_to_the_limits_it_asked_for(client):
    asked = {"memory_mb": 256, "wall_time_s": 12.5, "cpu_time_s": 7, "output_kb": 2048}
    r = client.post(EXECUTE, {"script": "print(1)", "limits": asked}, format="json")
    assert r.status_code == 202, r.json()
    run = Execution.objects.get(execution_id=r.json()["execution_id"]).run_limits
    assert (run.memory_bytes, run.wall_time_s, run.cpu_time_s, run.output_bytes) == (
        256 * MIB,
        12.5,
        7.0,
        2048 * KIB,
    )
    assert run.processes == limits.current().processes  # the rest as in force


def test_limits_not_asked_for_are_the_defaults(client):
    r = client.post(EXECUTE, {"script": "print(1)", "limits": {"wall_time_s": 9}}, format="json")
    execution = Execution.objects.get(execution_id=r.json()["execution_id"])
    assert execution.limits == {**limits.current().to_dict(), "wall_time_s": 9.0}


@pytest.mark.parametrize(
    "field, value, maximum, setting",
    [
        ("memory_mb", 513, "512", "LIMIT_MAX_MEMORY_MB"),
        ("wall_time_s", 30.5, "30", "LIMIT_MAX_WALL_TIME_S"),
        ("cpu_time_s", 31, "30", "LIMIT_MAX_CPU_TIME_S"),
        ("output_kb", 4097, "4096", "LIMIT_MAX_OUTPUT_KB"),
    ],
)
def test_above_the_maximum_is_a_400_naming_the_field_and_the_maximum(
    client, field, value, maximum, setting
):
    r = client.post(EXECUTE, {"script": "print(1)", "limits": {field: value}}, format="json")
    assert r.status_code == 400
    (message,) = r.json()["limits"][field]
    assert f"maximum, {maximum} ({setting})" in message
    assert not Execution.objects.exists()


def test_the_maxima_are_settings(client, settings):
    settings.LIMIT_MAXIMA = {**settings.LIMIT_MAXIMA, "memory_mb": 1024}
    r = client.post(EXECUTE, {"script": "1", "limits": {"memory_mb": 1024}}, format="json")
    assert r.status_code == 202


def test_bad_limits_are_400s_naming_the_field(client):
    bad = {"memory_mb": 1, "wall_time_s": "soon", "nice": 5}
    r = client.post(EXECUTE, {"script": "1", "limits": bad}, format="json")
    assert r.status_code == 400
    errors = r.json()["limits"]
    assert "Unknown field" in errors["nice"][0]
    r = client.post(EXECUTE, {"script": "1", "limits": {"memory_mb": 1}}, format="json")
    assert "16" in r.json()["limits"]["memory_mb"][0]
    r = client.post(EXECUTE, {"script": "1", "limits": [1]}, format="json")
    assert r.status_code == 400 and "limits" in r.json()


def test_an_idempotency_key_with_other_limits_is_a_different_request(alice_api):
    def post(body):
        return alice_api.post(EXECUTE, body, format="json", headers={"Idempotency-Key": "k-1"})

    body = {"script": "print(1)", "limits": {"wall_time_s": 10}}
    assert post(body).status_code == 202
    assert post(body).status_code == 200
    assert post({**body, "limits": {"wall_time_s": 11}}).status_code == 422


def test_k8s_limits_says_the_maxima(client):
    data = client.get("/api/v1/k8s-limits").json()
    assert data["maxima"] == {
        "memory_mb": 512,
        "wall_time_s": 30.0,
        "cpu_time_s": 30.0,
        "output_kb": 4096,
    }


def test_a_default_above_its_maximum_stops_start_up(monkeypatch):
    import subprocess
    import sys

    env = {"LIMIT_MEMORY_MB": "600", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", "import integr8s.settings"],
        env=env,
        capture_output=True,
        text=True,
        cwd=str(__import__("pathlib").Path(__file__).resolve().parent.parent),
    )
    assert out.returncode != 0
    assert "LIMIT_MEMORY_MB=600 is above LIMIT_MAX_MEMORY_MB=512" in out.stderr


# --- the editor --------------------------------------------------------------------------------


def test_the_editor_offers_the_limits_with_their_maxima(client):
    page = client.get(reverse("editor")).content.decode()
    assert 'name="memory_mb"' in page and 'max="512"' in page
    assert 'name="wall_time_s"' in page and 'placeholder="5"' in page


def test_the_editor_runs_with_the_limits_asked_for(client):
    data = {"script": "print(1)", "memory_mb": "300", "wall_time_s": "", "cpu_time_s": "2.5"}
    assert client.post(reverse("run"), data).status_code == 302
    run = Execution.objects.get().run_limits
    assert (run.memory_bytes, run.wall_time_s, run.cpu_time_s) == (300 * MIB, 5.0, 2.5)


def test_the_editor_says_which_limit_is_above_its_maximum(client):
    response = client.post(reverse("run"), {"script": "print(1)", "output_kb": "5000"})
    assert response.status_code == 400
    assert "above this server&#x27;s maximum, 4096 (LIMIT_MAX_OUTPUT_KB)" in (
        response.content.decode()
    )
    assert not Execution.objects.exists()


# --- the run is held to them, for real -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_sandbox_holds_a_run_to_its_own_wall_time():
    # 1 s asked for, the default is 5 s: a 3 s sleep is stopped.
    short = Execution.objects.submit("import time; time.sleep(3)", limits={"wall_time_s": 1})
    call_command("runworker", once=True, stdout=StringIO())
    short.refresh_from_db()
    assert (short.status, short.error_type) == ("timeout", "timeout"), short.reason


@pytest.mark.django_db(transaction=True)
def test_the_sandbox_gives_a_run_the_memory_it_asked_for():
    grab = "x = bytearray(200 * 1024 * 1024); print(len(x))"
    more = Execution.objects.submit(grab, limits={"memory_mb": 400})
    default = Execution.objects.submit(grab)
    call_command("runworker", once=True, stdout=StringIO())
    more.refresh_from_db()
    default.refresh_from_db()
    assert (more.status, more.output) == ("completed", f"{200 * MIB}\n"), more.reason
    assert default.error_type == "memory_limit", default.reason

"""The API with a real worker: wait=true, cancelling a running script, the seed's version demo."""

import time

import pytest
from rest_framework.test import APIClient

from executions import examples, runtimes
from executions.models import Execution

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]

EXECUTE = "/api/v1/execute?wait=true"


@pytest.fixture
def client():
    return APIClient()


def needs(version):
    if version not in runtimes.versions():
        pytest.skip(f"Python {version} is not installed here (runtimes: {runtimes.versions()})")
    return version


def test_wait_returns_the_result(client):
    r = client.post(EXECUTE, {"script": "print(input().upper())", "stdin": "hi\n"}, format="json")
    assert r.status_code == 200
    body = r.json()
    assert (body["status"], body["output"], body["exit_code"]) == ("completed", "HI\n", 0)
    assert body["error_type"] is None
    assert body["wall_time_ms"] is not None


def test_the_seed_demo_on_312(client):
    r = client.post(
        EXECUTE, {"script": examples.VERSION_DEMO, "python_version": needs("3.12")}, format="json"
    )
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "completed", body
    assert body["output"].splitlines() == [
        "An integer greater than 10",
        "A string: hello",
        "Something else",
    ]
    assert (body["exit_code"], body["error_type"], body["python_version"]) == (0, None, "3.12")


def test_the_seed_demo_on_39(client):
    r = client.post(
        EXECUTE, {"script": examples.VERSION_DEMO, "python_version": needs("3.9")}, format="json"
    )
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "completed", body
    assert "SyntaxError" in body["errors"]
    assert body["error_type"] == "script_error"
    assert body["exit_code"] != 0
    assert body["output"] == ""


def test_an_exception_is_a_completed_script_error(client):
    r = client.post(EXECUTE, {"script": examples.get("exception")["script"]}, format="json")
    body = r.json()
    assert (body["status"], body["error_type"], body["exit_code"]) == (
        "completed",
        "script_error",
        1,
    )
    assert "ZeroDivisionError" in body["errors"]
    assert body["output"] == "About to divide by zero...\n"


def test_cancelling_a_running_script_stops_it(client):
    r = client.post(
        "/api/v1/execute",
        {"script": "import time\nprint('started', flush=True)\ntime.sleep(30)\n"},
        format="json",
    )
    execution_id = r.json()["execution_id"]
    deadline = time.monotonic() + 10
    while Execution.objects.get(execution_id=execution_id).status == "queued":
        assert time.monotonic() < deadline, "the worker never started the run"
        time.sleep(0.02)
    r = client.post(f"/api/v1/executions/{execution_id}/cancel")
    assert r.status_code in (200, 202)
    deadline = time.monotonic() + 10
    while not (execution := Execution.objects.get(execution_id=execution_id)).is_terminal:
        assert time.monotonic() < deadline, "the run was not stopped"
        time.sleep(0.05)
    assert (execution.status, execution.error_type) == ("cancelled", "cancelled")
    assert execution.wall_time_ms is None or execution.wall_time_ms < 10_000
    r = client.post(f"/api/v1/executions/{execution_id}/cancel")
    assert r.status_code == 200  # cancelling a cancelled run again is harmless


def test_idempotent_replay_with_wait_returns_the_result(client):
    client.session.save()  # an anonymous key belongs to a browser session
    headers = {"Idempotency-Key": "wait-twice"}
    first = client.post(EXECUTE, {"script": "print(1)"}, format="json", headers=headers)
    again = client.post(EXECUTE, {"script": "print(1)"}, format="json", headers=headers)
    assert first.json()["execution_id"] == again.json()["execution_id"]
    assert (again.status_code, again.json()["output"]) == (200, "1\n")

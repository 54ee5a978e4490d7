"""The executions API without a worker: submit, read, list, cancel, retry, and bad input."""

import json
import uuid

import pytest
from rest_framework.test import APIClient

from executions import runtimes
from executions.models import Execution

pytestmark = pytest.mark.django_db

EXECUTE = "/api/v1/execute"


@pytest.fixture
def client():
    return APIClient()


def result_url(execution_id):
    return f"/api/v1/result/{execution_id}"


def finish(execution_id, status="completed", **fields):
    Execution.objects.filter(execution_id=execution_id).update(status=status, **fields)


# --- POST /execute -----------------------------------------------------------------------------


def test_it_queues_a_script(client):
    r = client.post(EXECUTE, {"script": "print(1)"}, format="json")
    assert r.status_code == 202
    assert r.json()["status"] == "queued"
    execution = Execution.objects.get(execution_id=r.json()["execution_id"])
    assert execution.owner is None
    assert execution.python_version == runtimes.default_version()
    assert execution.client_ip == "127.0.0.1"
    assert r.headers["Location"].endswith(result_url(execution.execution_id))
    assert r.json()["links"]["self"].endswith(result_url(execution.execution_id))


def test_it_records_the_owner_version_and_stdin(alice_api, alice):
    version = runtimes.versions()[-1]
    r = alice_api.post(
        EXECUTE,
        {"script": "print(input())", "python_version": version, "stdin": "hi\n"},
        format="json",
    )
    assert r.status_code == 202
    execution = Execution.objects.get(execution_id=r.json()["execution_id"])
    assert (execution.owner, execution.python_version, execution.stdin) == (alice, version, "hi\n")
    assert execution.limits["wall_time_s"] > 0


def test_it_keeps_the_script_exactly_as_sent(client):
    script = "\n\n  print('indented?')\n\t\n"
    r = client.post(EXECUTE, {"script": "if True:\n" + script, "stdin": "  \n"}, format="json")
    execution = Execution.objects.get(execution_id=r.json()["execution_id"])
    assert execution.script == "if True:\n" + script
    assert execution.stdin == "  \n"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({}, "script", "required"),
        ({"script": ""}, "script", "empty"),
        ({"script": "   \n"}, "script", "empty"),
        ({"script": None}, "script", "null"),
        ({"script": 42}, "script", "string"),
        ({"script": ["print(1)"]}, "script", "string"),
        ({"script": {"a": 1}}, "script", "string"),
        ({"script": True}, "script", "string"),
        ({"script": "print(1)\x00"}, "script", "Null characters"),
        ({"script": "x" * (64 * 1024 + 1)}, "script", "limit is 64 KiB"),
        ({"script": "print(1)", "stdin": 5}, "stdin", "string"),
        ({"script": "print(1)", "stdin": "x" * (64 * 1024 + 1)}, "stdin", "limit is 64 KiB"),
        ({"script": "print(1)", "python_version": "2.7"}, "python_version", "not available"),
        ({"script": "print(1)", "python_version": 3.12}, "python_version", "string"),
        ({"script": "print(1)", "python_version": "3" * 11}, "python_version", "10 characters"),
        ({"script": "print(1)", "stdinn": "typo"}, "stdinn", "Unknown field"),
    ],
)
def test_it_names_the_field_and_the_rule(client, body, field, words):
    r = client.post(EXECUTE, body, format="json")
    assert r.status_code == 400
    assert words in " ".join(r.json()[field])
    assert not Execution.objects.exists()


def test_a_lone_surrogate_is_refused(client):
    r = client.generic(
        "POST", EXECUTE, '{"script": "print(1) # \\ud800"}', content_type="application/json"
    )
    assert r.status_code == 400
    assert "script" in r.json()


def test_a_body_that_is_not_an_object_is_refused(client):
    r = client.post(EXECUTE, ["print(1)"], format="json")
    assert r.status_code == 400
    assert "non_field_errors" in r.json()


def test_malformed_json_is_a_400(client):
    r = client.generic("POST", EXECUTE, '{"script": ', content_type="application/json")
    assert r.status_code == 400
    assert "JSON parse error" in r.json()["detail"]


def test_deeply_nested_json_is_a_400(client):
    r = client.generic("POST", EXECUTE, "[" * 100_000, content_type="application/json")
    assert r.status_code == 400
    assert "JSON" in r.json()["detail"]


def test_an_urlencoded_form_body_is_a_415(client):
    # JSON, or multipart (which carries input files): nothing else.
    r = client.generic(
        "POST", EXECUTE, "script=print(1)", content_type="application/x-www-form-urlencoded"
    )
    assert r.status_code == 415
    assert "detail" in r.json()


def test_an_oversized_body_is_a_413(client, settings):
    body = json.dumps({"script": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)})
    r = client.generic("POST", EXECUTE, body, content_type="application/json")
    assert r.status_code == 413
    assert "larger than the limit" in r.json()["detail"]


def test_execute_is_post_only(client):
    r = client.get(EXECUTE)
    assert r.status_code == 405
    assert "detail" in r.json()


def test_wait_must_be_a_boolean(client):
    r = client.post(EXECUTE + "?wait=maybe", {"script": "print(1)"}, format="json")
    assert r.status_code == 400
    assert "wait" in r.json()


def test_wait_false_queues_as_usual(client):
    r = client.post(EXECUTE + "?wait=false", {"script": "print(1)"}, format="json")
    assert r.status_code == 202


def test_wait_gives_up_with_the_current_state(client, settings):
    settings.LIMITS = {**settings.LIMITS, "wall_time_s": 0.1}
    settings.WAIT_MARGIN_S = 0
    r = client.post(EXECUTE + "?wait=true", {"script": "print(1)"}, format="json")
    assert r.status_code == 202  # no worker: still queued when the bound ran out
    assert r.json()["status"] == "queued"
    assert "output" in r.json()


# --- Idempotency-Key ---------------------------------------------------------------------------


def test_an_idempotency_key_returns_the_same_execution(alice_api):
    headers = {"Idempotency-Key": "order-1"}
    first = alice_api.post(EXECUTE, {"script": "print(1)"}, format="json", headers=headers)
    again = alice_api.post(EXECUTE, {"script": "print(1)"}, format="json", headers=headers)
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["execution_id"] == first.json()["execution_id"]
    assert Execution.objects.count() == 1


def test_idempotency_keys_are_per_user(alice_api, bob_api):
    headers = {"Idempotency-Key": "same"}
    a = alice_api.post(EXECUTE, {"script": "print(1)"}, format="json", headers=headers)
    b = bob_api.post(EXECUTE, {"script": "print(1)"}, format="json", headers=headers)
    assert (a.status_code, b.status_code) == (202, 202)
    assert a.json()["execution_id"] != b.json()["execution_id"]


def test_anonymous_idempotency_keys_are_per_browser_session(client):
    """Two people behind one address (the same REMOTE_ADDR) reuse a key: each gets their own."""
    headers = {"Idempotency-Key": "anon"}
    client.session.save()  # a browser session, as any earlier answer's cookie gives
    a = client.post(EXECUTE, {"script": "print(1)"}, format="json", headers=headers)
    b = client.post(EXECUTE, {"script": "print(1)"}, format="json", headers=headers)
    other = APIClient()
    other.session.save()
    c = other.post(EXECUTE, {"script": "print(2)", "stdin": "mine"}, format="json", headers=headers)
    assert (a.status_code, b.status_code, c.status_code) == (202, 200, 202)
    assert a.json()["execution_id"] == b.json()["execution_id"] != c.json()["execution_id"]


def test_an_idempotency_key_race_returns_the_winner(alice_api, alice, monkeypatch):
    """The other request inserted between our look-up and our insert: the constraint wins."""
    from executions import api

    winner = Execution.objects.submit("print(1)", owner=alice, idempotency_key="race")
    lookups = iter([None, winner])
    monkeypatch.setattr(api, "earlier_submission", lambda request, key: next(lookups))
    r = alice_api.post(
        EXECUTE, {"script": "print(1)"}, format="json", headers={"Idempotency-Key": "race"}
    )
    assert r.status_code == 200
    assert r.json()["execution_id"] == str(winner.execution_id)
    assert Execution.objects.count() == 1


def test_an_anonymous_idempotency_key_race_returns_the_winner(client, monkeypatch):
    """Anonymous callers race too: the database refuses a second row for one session and key."""
    from executions import api

    client.session.save()
    key = client.session.session_key
    winner = Execution.objects.submit("print(1)", session_key=key, idempotency_key="race")
    lookups = iter([None, winner])
    monkeypatch.setattr(api, "earlier_submission", lambda request, key: next(lookups))
    r = client.post(
        EXECUTE, {"script": "print(1)"}, format="json", headers={"Idempotency-Key": "race"}
    )
    assert r.status_code == 200
    assert r.json()["execution_id"] == str(winner.execution_id)
    assert Execution.objects.count() == 1


def test_an_overlong_idempotency_key_is_refused(client):
    r = client.post(
        EXECUTE, {"script": "print(1)"}, format="json", headers={"Idempotency-Key": "k" * 201}
    )
    assert r.status_code == 400
    assert "Idempotency-Key" in r.json()


# --- Throttling --------------------------------------------------------------------------------


def test_too_many_submissions_get_429_with_retry_after(client, settings):
    settings.THROTTLE_ANON = "2/min"
    for _ in range(2):
        assert client.post(EXECUTE, {"script": "print(1)"}, format="json").status_code == 202
    r = client.post(EXECUTE, {"script": "print(1)"}, format="json")
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert "Too many runs" in r.json()["detail"]
    assert Execution.objects.count() == 2


def test_too_many_active_runs_get_429(alice_api, settings):
    settings.MAX_ACTIVE_PER_CALLER = 1
    assert alice_api.post(EXECUTE, {"script": "print(1)"}, format="json").status_code == 202
    r = alice_api.post(EXECUTE, {"script": "print(1)"}, format="json")
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "1"
    assert "waiting or running" in r.json()["detail"]


def test_invalid_submissions_do_not_count_against_the_rate(client, settings):
    settings.THROTTLE_ANON = "1/min"
    for _ in range(3):
        assert client.post(EXECUTE, {"script": ""}, format="json").status_code == 400
    assert client.post(EXECUTE, {"script": "print(1)"}, format="json").status_code == 202


# --- GET /result/<id> --------------------------------------------------------------------------


def test_anyone_may_read_an_anonymous_execution(client, alice_api):
    execution = Execution.objects.submit("print(1)", stdin="in")
    finish(execution.execution_id, output="1\n", exit_code=0, wall_time_ms=12)
    for c in (client, alice_api):
        r = c.get(result_url(execution.execution_id))
        assert r.status_code == 200
        body = r.json()
        assert body["execution_id"] == str(execution.execution_id)
        assert (body["status"], body["output"], body["exit_code"]) == ("completed", "1\n", 0)
        assert body["stdin"] == "in"
        assert body["limits"]["memory_bytes"] == 128 * 1024 * 1024
        for field in (
            "errors",
            "error_type",
            "reason",
            "output_truncated",
            "errors_truncated",
            "wall_time_ms",
            "cpu_time_ms",
            "peak_memory_kb",
            "created_at",
            "started_at",
            "finished_at",
            "updated_at",
            "python_version",
            "script",
        ):
            assert field in body


def test_a_users_execution_is_theirs_alone(alice, alice_api, bob_api, client):
    execution = Execution.objects.submit("print(1)", owner=alice)
    assert alice_api.get(result_url(execution.execution_id)).status_code == 200
    assert bob_api.get(result_url(execution.execution_id)).status_code == 404
    assert client.get(result_url(execution.execution_id)).status_code == 404


@pytest.mark.parametrize("bad", ["not-a-uuid", "1", uuid.uuid4().hex[:-1]])
def test_a_malformed_id_is_a_json_404(client, bad):
    r = client.get(result_url(bad))
    assert r.status_code == 404
    assert "no execution" in r.json()["detail"]


def test_a_nul_in_the_id_is_a_json_400(client):
    """No address of the site holds a NUL (tests/test_malformed_requests.py)."""
    r = client.get(result_url("%00"))
    assert r.status_code == 400
    assert "NUL" in r.json()["detail"]


def test_an_unknown_id_is_a_404(client):
    r = client.get(result_url(uuid.uuid4()))
    assert r.status_code == 404
    assert "detail" in r.json()


def test_result_is_get_only(client):
    execution = Execution.objects.submit("print(1)")
    assert client.delete(result_url(execution.execution_id)).status_code == 405


# --- GET /executions/ --------------------------------------------------------------------------


def test_users_list_their_own_executions_newest_first(alice, bob, alice_api):
    first = Execution.objects.submit("print(1)", owner=alice, stdin="secret")
    second = Execution.objects.submit("print(2)", owner=alice)
    Execution.objects.submit("print(3)", owner=bob)
    Execution.objects.submit("print(4)")
    r = alice_api.get("/api/v1/executions/")
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 2
    ids = [e["execution_id"] for e in body["results"]]
    assert ids == [str(second.execution_id), str(first.execution_id)]
    assert "stdin" not in body["results"][0] and "output" not in body["results"][0]


def test_the_list_filters_by_status_and_version(alice, alice_api):
    done = Execution.objects.submit("print(1)", owner=alice, python_version="3.12")
    finish(done.execution_id)
    Execution.objects.submit("print(2)", owner=alice, python_version="3.12")
    Execution.objects.submit("print(3)", owner=alice, python_version="3.9")
    r = alice_api.get("/api/v1/executions/?status=completed")
    assert [e["execution_id"] for e in r.json()["results"]] == [str(done.execution_id)]
    r = alice_api.get("/api/v1/executions/?python_version=3.9")
    assert [e["python_version"] for e in r.json()["results"]] == ["3.9"]
    r = alice_api.get("/api/v1/executions/?status=queued&python_version=3.12")
    assert r.json()["count"] == 1
    assert alice_api.get("/api/v1/executions/?status=").json()["count"] == 3


@pytest.mark.parametrize(
    ("query", "field"), [("status=done", "status"), ("python_version=latest", "python_version")]
)
def test_a_bad_filter_is_a_400_naming_it(alice_api, query, field):
    r = alice_api.get(f"/api/v1/executions/?{query}")
    assert r.status_code == 400
    assert list(r.json()) == [field]


def test_the_list_is_paginated(alice, alice_api):
    for i in range(21):
        Execution.objects.submit(f"print({i})", owner=alice)
    body = alice_api.get("/api/v1/executions/").json()
    assert (body["count"], len(body["results"])) == (21, 20)
    assert body["next"].endswith("page=2")
    assert len(alice_api.get("/api/v1/executions/?page=2").json()["results"]) == 1
    assert alice_api.get("/api/v1/executions/?page=9").status_code == 404


def test_anonymous_callers_without_a_session_list_nothing(client):
    Execution.objects.submit("print(1)")
    r = client.get("/api/v1/executions/")
    assert r.status_code == 200
    assert r.json()["count"] == 0


def test_anonymous_callers_list_their_sessions_runs(client):
    client.session.save()  # a browser session, as the editor pages create
    mine = client.post(EXECUTE, {"script": "print(1)"}, format="json").json()["execution_id"]
    Execution.objects.submit("print(2)")  # someone else's anonymous run
    r = client.get("/api/v1/executions/")
    assert [e["execution_id"] for e in r.json()["results"]] == [mine]


def test_the_list_is_get_only(alice_api):
    assert alice_api.post("/api/v1/executions/", {}, format="json").status_code == 405


# --- Cancel ------------------------------------------------------------------------------------


def cancel_url(execution_id):
    return f"/api/v1/executions/{execution_id}/cancel"


def retry_url(execution_id):
    return f"/api/v1/executions/{execution_id}/retry"


def test_cancelling_a_queued_run_ends_it(alice, alice_api):
    execution = Execution.objects.submit("print(1)", owner=alice)
    r = alice_api.post(cancel_url(execution.execution_id))
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["error_type"]) == ("cancelled", "cancelled")
    assert "before it started" in r.json()["reason"]
    # Cancelling again is harmless.
    assert alice_api.post(cancel_url(execution.execution_id)).status_code == 200


def test_cancelling_a_running_run_flags_it(alice, alice_api):
    execution = Execution.objects.submit("print(1)", owner=alice)
    finish(execution.execution_id, status="running")
    r = alice_api.post(cancel_url(execution.execution_id))
    assert r.status_code == 202
    assert (r.json()["status"], r.json()["cancel_requested"]) == ("running", True)


def test_cancelling_a_finished_run_is_a_409(alice, alice_api):
    execution = Execution.objects.submit("print(1)", owner=alice)
    finish(execution.execution_id)
    r = alice_api.post(cancel_url(execution.execution_id))
    assert r.status_code == 409
    assert "already ended" in r.json()["detail"]


def test_anonymous_runs_are_cancelled_by_the_session_that_made_them(client):
    """Anyone with the id may read an anonymous run; only its browser session cancels it."""
    execution_id = client.post(EXECUTE, {"script": "print(1)"}, format="json").json()[
        "execution_id"
    ]
    stranger = APIClient()
    assert stranger.get(result_url(execution_id)).status_code == 200
    assert stranger.post(cancel_url(execution_id)).status_code == 404
    assert client.post(cancel_url(execution_id)).status_code == 200


def test_nobody_else_can_cancel(alice, bob_api, client):
    execution = Execution.objects.submit("print(1)", owner=alice)
    assert bob_api.post(cancel_url(execution.execution_id)).status_code == 404
    assert client.post(cancel_url(execution.execution_id)).status_code == 404
    assert client.post(cancel_url("nope")).status_code == 404
    execution.refresh_from_db()
    assert execution.status == "queued"


def test_cancel_is_post_only(alice, alice_api):
    execution = Execution.objects.submit("print(1)", owner=alice)
    assert alice_api.get(cancel_url(execution.execution_id)).status_code == 405


def test_session_users_need_the_csrf_token(alice):
    execution = Execution.objects.submit("print(1)", owner=alice)
    c = APIClient(enforce_csrf_checks=True)
    c.force_login(alice)
    r = c.post(cancel_url(execution.execution_id))
    assert r.status_code == 403
    assert "CSRF" in r.json()["detail"]


# --- Retry -------------------------------------------------------------------------------------


def test_retry_queues_a_new_run_of_the_same_script(alice, alice_api):
    version = runtimes.versions()[-1]
    original = Execution.objects.submit("print(1)", python_version=version, owner=alice, stdin="x")
    finish(original.execution_id, status="failed", error_type="system_error")
    r = alice_api.post(retry_url(original.execution_id))
    assert r.status_code == 202
    again = Execution.objects.get(execution_id=r.json()["execution_id"])
    assert again.pk != original.pk
    assert (again.script, again.python_version, again.stdin) == ("print(1)", version, "x")
    assert (again.owner, again.retry_of, again.status) == (alice, original, "queued")
    detail = alice_api.get(result_url(again.execution_id)).json()
    assert detail["retry_of"] == str(original.execution_id)


def test_retrying_an_anonymous_run_belongs_to_the_caller(alice, alice_api):
    original = Execution.objects.submit("print(1)", client_ip="10.1.1.1")
    finish(original.execution_id)
    r = alice_api.post(retry_url(original.execution_id))
    assert r.status_code == 202
    assert Execution.objects.get(execution_id=r.json()["execution_id"]).owner == alice


def test_retrying_an_active_run_is_a_409(alice, alice_api):
    execution = Execution.objects.submit("print(1)", owner=alice)
    r = alice_api.post(retry_url(execution.execution_id))
    assert r.status_code == 409
    assert "still queued" in r.json()["detail"]


def test_retrying_a_version_no_longer_offered_is_a_409(alice, alice_api):
    execution = Execution.objects.submit("print(1)", owner=alice, python_version="2.7")
    finish(execution.execution_id)
    r = alice_api.post(retry_url(execution.execution_id))
    assert r.status_code == 409
    assert "2.7" in r.json()["detail"]


def test_retry_is_throttled(alice, alice_api, settings):
    settings.THROTTLE_USER = "1/min"
    execution = Execution.objects.submit("print(1)", owner=alice)
    finish(execution.execution_id)
    assert alice_api.post(retry_url(execution.execution_id)).status_code == 202
    r = alice_api.post(retry_url(execution.execution_id))
    assert r.status_code == 429
    assert "Retry-After" in r.headers


def test_nobody_else_can_retry(alice, bob_api, client):
    execution = Execution.objects.submit("print(1)", owner=alice)
    finish(execution.execution_id)
    assert bob_api.post(retry_url(execution.execution_id)).status_code == 404
    assert client.post(retry_url(execution.execution_id)).status_code == 404
    assert Execution.objects.count() == 1


def test_retry_is_post_only(alice, alice_api):
    execution = Execution.objects.submit("print(1)", owner=alice)
    assert alice_api.put(retry_url(execution.execution_id)).status_code == 405


# --- Unknown API paths -------------------------------------------------------------------------


def test_unknown_api_paths_are_json_404s(client):
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404
    assert "no API endpoint" in r.json()["detail"]


def test_a_missing_slash_gets_a_hint_not_a_redirect(alice_api):
    r = alice_api.post("/api/v1/executions", {}, format="json")
    assert r.status_code == 404
    assert "Did you mean /api/v1/executions/?" in r.json()["detail"]
    r = alice_api.post(EXECUTE + "/", {"script": "print(1)"}, format="json")
    assert "Did you mean /api/v1/execute?" in r.json()["detail"]


def test_the_api_root_is_a_json_404(client):
    r = client.get("/api/")
    assert r.status_code == 404
    assert r.json()["detail"] == "There is no API endpoint at /api/."


def test_an_execution_deleted_during_a_wait_is_a_404(client, monkeypatch):
    from executions import notify

    async def delete_while_waiting(wake, timeout):
        await Execution.objects.all().adelete()  # an operator deletes it meanwhile

    monkeypatch.setattr(notify._Wake, "wait", delete_while_waiting)
    r = client.post(EXECUTE + "?wait=1", {"script": "print(1)"}, format="json")
    assert r.status_code == 404
    assert "deleted" in r.json()["detail"]


def test_a_forged_forwarded_for_header_is_not_a_500(settings):
    settings.TRUSTED_PROXIES = 2
    c = APIClient(HTTP_X_FORWARDED_FOR="not-an-ip, 10.0.0.1")
    r = c.post(EXECUTE, {"script": "print(1)"}, format="json")
    assert r.status_code == 202
    assert Execution.objects.get().client_ip in (None, "10.0.0.1", "127.0.0.1")


def test_the_forwarded_for_address_is_recorded_behind_a_proxy(settings):
    settings.TRUSTED_PROXIES = 1
    c = APIClient(HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert c.post(EXECUTE, {"script": "print(1)"}, format="json").status_code == 202
    assert Execution.objects.get().client_ip == "203.0.113.7"

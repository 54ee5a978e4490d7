"""API paths the other API tests leave out: input to interactive runs, the events stream,
idempotency corner cases, wait slots, cancel and retry conflicts, unknown endpoints."""

import asyncio
import json
import uuid
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import RequestFactory
from django.utils import timezone
from rest_framework.test import APIClient

from executions import api
from executions.limits import Limits
from executions.models import Execution, InputLine, OutputChunk

from .conftest import run_of as bare_run_of

pytestmark = pytest.mark.django_db

EXECUTE = "/api/v1/execute"


def input_url(execution):
    return f"/api/v1/executions/{execution.execution_id}/input"


def limits_with(**fields):
    return {**Limits().to_dict(), **fields}


def run_of(owner=None, **fields):
    """A queued-by-hand run that carries its limits, as a submitted one does."""
    fields.setdefault("limits", limits_with())
    return bare_run_of(owner, **fields)


# --- POST /executions/<id>/input ---------------------------------------------------------------


def test_input_to_a_running_interactive_run_is_stored(alice, alice_api):
    run = run_of(alice, status="running", interactive=True)
    r = alice_api.post(input_url(run), {"text": "Ada\n"}, format="json")
    assert r.status_code == 202
    assert r.json() == {"detail": "Sent."}
    r = alice_api.post(input_url(run), {"eof": True}, format="json")
    assert r.status_code == 202
    lines = list(InputLine.objects.filter(execution=run).values_list("text", "eof"))
    assert lines == [("Ada\n", False), ("", True)]


def test_input_with_text_and_eof_writes_both(alice, alice_api):
    run = run_of(alice, status="running", interactive=True)
    r = alice_api.post(input_url(run), {"text": "x\n", "eof": True}, format="json")
    assert r.status_code == 202
    assert InputLine.objects.filter(execution=run).count() == 2


def test_input_needs_text_or_eof(alice, alice_api):
    run = run_of(alice, status="running", interactive=True)
    r = alice_api.post(input_url(run), {}, format="json")
    assert r.status_code == 400
    assert "text" in r.json()
    assert not InputLine.objects.exists()


def test_input_to_a_run_that_is_not_interactive_conflicts(alice, alice_api):
    run = run_of(alice, status="running")
    r = alice_api.post(input_url(run), {"text": "a"}, format="json")
    assert r.status_code == 409
    assert "not interactive" in r.json()["detail"]
    assert not InputLine.objects.exists()


@pytest.mark.parametrize(
    ("state", "words"), [("queued", "has not started yet"), ("completed", "has ended")]
)
def test_input_to_a_run_not_running_conflicts(alice, alice_api, state, words):
    run = run_of(alice, status=state, interactive=True)
    r = alice_api.post(input_url(run), {"text": "a"}, format="json")
    assert r.status_code == 409
    assert words in r.json()["detail"]


def test_input_past_the_cap_is_refused(alice, alice_api):
    run = run_of(
        alice,
        status="running",
        interactive=True,
        stdin="abc",
        limits=limits_with(stdin_bytes=10),
    )
    InputLine.objects.create(execution=run, text="12345")
    r = alice_api.post(input_url(run), {"text": "xyz"}, format="json")
    assert r.status_code == 413
    assert "10 bytes" in r.json()["detail"]
    assert InputLine.objects.filter(execution=run).count() == 1
    # What still fits is taken.
    r = alice_api.post(input_url(run), {"text": "xy"}, format="json")
    assert r.status_code == 202


def test_input_to_someone_elses_run_is_not_found(alice, bob_api):
    run = run_of(alice, status="running", interactive=True)
    r = bob_api.post(input_url(run), {"text": "a"}, format="json")
    assert r.status_code == 404
    assert not InputLine.objects.exists()


def test_input_to_a_malformed_id_is_not_found(alice_api):
    r = alice_api.post("/api/v1/executions/not-a-uuid/input", {"text": "a"}, format="json")
    assert r.status_code == 404
    assert "not-a-uuid" in r.json()["detail"]


# --- GET /executions/<id>/events ---------------------------------------------------------------


def collect(stream):
    async def gather():
        return [part async for part in stream]

    return asyncio.run(gather())


def body_of(response):
    return [p.decode() if isinstance(p, bytes) else p for p in collect(response.streaming_content)]


def events_of(parts):
    """[(event, data)] of the SSE parts (comments left out)."""
    found = []
    for part in parts:
        lines = dict(
            line.split(": ", 1) for line in part.strip().splitlines() if not line.startswith(":")
        )
        if "event" in lines:
            found.append((lines["event"], json.loads(lines["data"])))
    return found


@pytest.mark.django_db(transaction=True)  # the stream reads the rows from another thread
def test_events_of_an_ended_run_give_its_output_then_end(alice, alice_api):
    run = run_of(alice, status="completed", output="hi\n", exit_code=0)
    OutputChunk.objects.create(execution=run, seq=1, stream="stdout", text="hi\n")
    OutputChunk.objects.create(execution=run, seq=2, stream="stderr", text="oops\n")
    r = alice_api.get(f"/api/v1/executions/{run.execution_id}/events")
    assert r.status_code == 200
    assert r["Content-Type"] == "text/event-stream"
    assert r["Cache-Control"] == "no-store"
    assert r["X-Accel-Buffering"] == "no"
    parts = body_of(r)
    assert parts[0].startswith("id: 1\nevent: output\n")
    events = events_of(parts)
    assert [e for e, _ in events] == ["output", "output", "status", "end"]
    assert events[0][1] == {"stream": "stdout", "text": "hi\n", "seq": 1}
    assert events[1][1]["stream"] == "stderr"
    assert events[2][1] == {"status": "completed"}
    assert events[3][1]["execution_id"] == str(run.execution_id)
    assert events[3][1]["status"] == "completed"


@pytest.mark.django_db(transaction=True)
def test_events_resume_after_last_event_id(alice, alice_api):
    run = run_of(alice, status="completed")
    for seq in (1, 2, 3):
        OutputChunk.objects.create(execution=run, seq=seq, stream="stdout", text=f"{seq}\n")
    r = alice_api.get(f"/api/v1/executions/{run.execution_id}/events", HTTP_LAST_EVENT_ID="2")
    events = events_of(body_of(r))
    assert [d["seq"] for e, d in events if e == "output"] == [3]
    r = alice_api.get(f"/api/v1/executions/{run.execution_id}/events?last_event_id=1")
    events = events_of(body_of(r))
    assert [d["seq"] for e, d in events if e == "output"] == [2, 3]


def test_events_with_a_bad_last_event_id_are_refused(alice, alice_api):
    run = run_of(alice, status="completed")
    r = alice_api.get(f"/api/v1/executions/{run.execution_id}/events?last_event_id=abc")
    assert r.status_code == 400
    assert "last_event_id" in r.json()


def test_events_of_someone_elses_run_are_not_found(alice, bob_api):
    run = run_of(alice, status="completed")
    r = bob_api.get(f"/api/v1/executions/{run.execution_id}/events")
    assert r.status_code == 404


def test_event_stream_of_a_deleted_run_ends_saying_so(alice):
    run = run_of(alice, status="running")
    request = RequestFactory().get("/")
    run_copy = Execution.objects.get(pk=run.pk)
    run.delete()
    events = events_of(collect(api.event_stream(request, run_copy, 0, "waiting:test")))
    assert events == [("end", {"detail": "This execution was deleted."})]


@pytest.mark.django_db(transaction=True)
def test_event_stream_follows_a_run_to_its_end(alice, monkeypatch):
    """Status changes, output as it comes, a keep-alive comment when quiet, then the end."""
    run = run_of(alice, status="queued")
    request = RequestFactory().get("/")
    request.user = alice
    monkeypatch.setattr(api, "EVENTS_TICK_S", 0.01)
    monkeypatch.setattr(api, "EVENTS_KEEPALIVE_S", -1)  # every quiet look sends one
    looks = {"n": 0}
    real_look = api.look

    async def look(pk, after):
        looks["n"] += 1
        if looks["n"] == 2:
            await Execution.objects.filter(pk=pk).aupdate(status="running")
            await OutputChunk.objects.acreate(execution_id=pk, seq=1, stream="stdout", text="a")
        elif looks["n"] == 4:
            await Execution.objects.filter(pk=pk).aupdate(status="completed", output="a")
        return await real_look(pk, after)

    monkeypatch.setattr(api, "look", look)
    parts = collect(api.event_stream(request, run, 0, "waiting:test"))
    assert ": still running\n\n" in parts
    events = events_of(parts)
    assert events[0] == ("status", {"status": "queued", "awaiting_input": False})
    assert ("status", {"status": "running", "awaiting_input": False}) in events
    assert ("output", {"stream": "stdout", "text": "a", "seq": 1}) in events
    assert events[-2] == ("status", {"status": "completed"})
    assert events[-1][0] == "end"
    assert events[-1][1]["output"] == "a"


# --- POST /execute: idempotency and waiting ----------------------------------------------------


def test_an_overlong_idempotency_key_is_refused(alice_api):
    r = alice_api.post(
        EXECUTE, {"script": "print(1)"}, format="json", HTTP_IDEMPOTENCY_KEY="k" * 500
    )
    assert r.status_code == 400
    assert "Idempotency-Key" in r.json()
    assert not Execution.objects.exists()


def test_a_key_reused_for_another_script_is_refused(alice_api):
    r = alice_api.post(EXECUTE, {"script": "print(1)"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert r.status_code == 202
    first = r.json()["execution_id"]
    r = alice_api.post(EXECUTE, {"script": "print(2)"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert r.status_code == 422
    assert first in r.json()["Idempotency-Key"][0]
    assert Execution.objects.count() == 1


def test_a_key_reused_with_other_limits_is_refused(alice_api):
    body = {"script": "print(1)", "limits": {"wall_time_s": 2}}
    r = alice_api.post(EXECUTE, body, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    assert r.status_code == 202
    body["limits"] = {"wall_time_s": 3}
    r = alice_api.post(EXECUTE, body, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    assert r.status_code == 422
    body["limits"] = {"wall_time_s": 2}
    r = alice_api.post(EXECUTE, body, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    assert r.status_code == 200
    assert r["Idempotent-Replayed"] == "true"


def test_an_expired_key_runs_again(alice, alice_api, settings):
    r = alice_api.post(EXECUTE, {"script": "print(1)"}, format="json", HTTP_IDEMPOTENCY_KEY="k3")
    old = Execution.objects.get(execution_id=r.json()["execution_id"])
    Execution.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS + 1)
    )
    r = alice_api.post(EXECUTE, {"script": "print(1)"}, format="json", HTTP_IDEMPOTENCY_KEY="k3")
    assert r.status_code == 202
    assert r.json()["execution_id"] != str(old.execution_id)
    old.refresh_from_db()
    assert old.idempotency_key == ""


def test_a_replay_past_the_rate_limit_is_throttled(alice_api, monkeypatch):
    r = alice_api.post(EXECUTE, {"script": "print(1)"}, format="json", HTTP_IDEMPOTENCY_KEY="k4")
    assert r.status_code == 202
    monkeypatch.setattr(
        api.throttling, "check_rate", lambda request: api.Refusal("Slow down.", retry_after=7)
    )
    r = alice_api.post(EXECUTE, {"script": "print(1)"}, format="json", HTTP_IDEMPOTENCY_KEY="k4")
    assert r.status_code == 429
    assert "Slow down." in json.dumps(r.json())


def test_wait_slots_are_capped_per_caller(alice, settings):
    settings.MAX_ACTIVE_PER_CALLER = 1
    request = RequestFactory().post("/")
    request.user = alice
    key, refusal = api.take_wait_slot(request)
    assert key == f"waiting:user:{alice.pk}"
    assert refusal is None
    key2, refusal = api.take_wait_slot(request)
    assert refusal is not None
    assert "the limit is 1" in refusal.message
    assert cache.get(key) == 1  # the refused one gave its slot back
    api.give_wait_slot(key)
    assert cache.get(key) == 0


def test_a_slot_expiring_between_add_and_incr_starts_again(alice, monkeypatch):
    request = RequestFactory().post("/")
    request.user = alice
    monkeypatch.setattr(cache, "add", lambda *a, **k: False)  # as if it expired at once
    key, refusal = api.take_wait_slot(request)
    assert refusal is None
    assert cache.get(key) == 1


def test_giving_back_an_expired_slot_is_harmless():
    api.give_wait_slot("waiting:user:nobody")
    assert cache.get("waiting:user:nobody") is None


def test_a_waiting_request_past_its_slots_is_throttled(alice, alice_api, settings):
    cache.set(f"waiting:user:{alice.pk}", settings.MAX_ACTIVE_PER_CALLER)
    r = alice_api.post(EXECUTE + "?wait=true", {"script": "print(1)"}, format="json")
    assert r.status_code == 429
    assert "requests waiting" in json.dumps(r.json())


def test_a_wait_for_a_deleted_run_is_not_found(alice, alice_api, monkeypatch):
    async def gone(execution, fresh=False):
        raise api.exceptions.NotFound("This execution was deleted.")

    monkeypatch.setattr(api, "wait_for", gone)
    r = alice_api.post(EXECUTE + "?wait=true", {"script": "print(1)"}, format="json")
    assert r.status_code == 404
    assert r.json() == {"detail": "This execution was deleted."}
    assert cache.get(f"waiting:user:{alice.pk}") == 0  # its slot was given back


def test_wait_for_a_run_deleted_meanwhile_raises_not_found(alice):
    run = run_of(alice)
    Execution.objects.filter(pk=run.pk).delete()
    with pytest.raises(api.exceptions.NotFound):
        asyncio.run(api.wait_for(run))


def test_a_bad_wait_value_is_refused(alice_api):
    r = alice_api.post(EXECUTE + "?wait=maybe", {"script": "print(1)"}, format="json")
    assert r.status_code == 400
    assert "wait" in r.json()


# --- cancel, retry -----------------------------------------------------------------------------


def test_cancelling_an_ended_run_conflicts(alice, alice_api):
    run = run_of(alice, status="completed")
    r = alice_api.post(f"/api/v1/executions/{run.execution_id}/cancel")
    assert r.status_code == 409
    assert "already ended" in r.json()["detail"]


def test_cancelling_a_running_run_is_under_way(alice, alice_api):
    run = run_of(alice, status="running")
    r = alice_api.post(f"/api/v1/executions/{run.execution_id}/cancel")
    assert r.status_code == 202
    run.refresh_from_db()
    assert run.cancel_requested
    assert run.reason == "Cancelled by its owner."


def test_an_operator_cancels_on_behalf(alice, bob, django_user_model):
    from django.contrib.auth.models import Permission

    bob.is_staff = True  # operators sign in to the admin
    bob.save(update_fields=["is_staff"])
    bob.user_permissions.add(Permission.objects.get(codename="change_execution"))
    bob = django_user_model.objects.get(pk=bob.pk)
    client = APIClient()
    client.force_authenticate(bob)
    run = run_of(alice, status="queued")
    r = client.post(f"/api/v1/executions/{run.execution_id}/cancel")
    assert r.status_code == 200
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert "an operator" in run.reason


def test_retrying_an_active_run_conflicts(alice, alice_api):
    run = run_of(alice, status="running")
    r = alice_api.post(f"/api/v1/executions/{run.execution_id}/retry")
    assert r.status_code == 409
    assert "still running" in r.json()["detail"]
    assert Execution.objects.count() == 1


def test_retrying_past_the_rate_limit_is_throttled(alice, alice_api, monkeypatch):
    run = run_of(alice, status="completed")
    monkeypatch.setattr(
        api.throttling,
        "check_submission",
        lambda request: api.Refusal("Too many runs.", retry_after=3),
    )
    r = alice_api.post(f"/api/v1/executions/{run.execution_id}/retry")
    assert r.status_code == 429
    assert "Too many runs." in json.dumps(r.json())
    assert Execution.objects.count() == 1


def test_result_of_an_unknown_id_is_not_found(alice_api):
    r = alice_api.get(f"/api/v1/result/{uuid.uuid4()}")
    assert r.status_code == 404


# --- unknown endpoints -------------------------------------------------------------------------


def test_an_unknown_path_hints_at_the_one_with_a_slash(alice_api):
    r = alice_api.get("/api/v1/executions")
    assert r.status_code == 404
    assert "Did you mean /api/v1/executions/?" in r.json()["detail"]


def test_an_unknown_path_without_a_near_miss_has_no_hint(alice_api):
    r = alice_api.post("/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["detail"] == "There is no API endpoint at /api/v1/nothing-here."

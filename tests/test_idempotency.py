"""Idempotency-Key: one caller's key, one request. Anonymous keys belong to a browser session,
a key reused for another request is a 422, keys expire, and replays are throttled."""

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from rest_framework.test import APIClient

from executions import api
from executions.models import Execution

pytestmark = pytest.mark.django_db

EXECUTE = "/api/v1/execute"


def submit(client, key="order-1", wait=False, **body):
    body.setdefault("script", "print(1)")
    url = EXECUTE + ("?wait=true" if wait else "")
    return client.post(url, body, format="json", headers={"Idempotency-Key": key})


def browser():
    """An anonymous API client with a session (the cookie an earlier answer set)."""
    client = APIClient()
    client.session.save()
    return client


def test_the_same_key_with_another_script_is_a_422_naming_the_key(alice_api):
    first = submit(alice_api, script="print('pay 10')")

    again = submit(alice_api, script="print('pay 1000')")

    assert (first.status_code, again.status_code) == (202, 422)
    assert "order-1" in again.json()["Idempotency-Key"][0]
    assert Execution.objects.count() == 1


@pytest.mark.parametrize("change", [{"stdin": "other"}, {"python_version": "3.9"}])
def test_another_input_or_version_is_another_request(alice_api, change):
    from executions import runtimes

    if change.get("python_version") not in (None, *runtimes.versions()):
        pytest.skip("Python 3.9 is not installed here")
    assert submit(alice_api, python_version="3.12").status_code == 202
    assert submit(alice_api, **{"python_version": "3.12", **change}).status_code == 422


def test_an_omitted_version_is_the_default_it_ran_with(alice_api):
    from executions import runtimes

    assert submit(alice_api).status_code == 202
    again = submit(alice_api, python_version=runtimes.default_version())
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"


def test_a_key_expires(alice_api, alice, settings):
    settings.IDEMPOTENCY_KEY_HOURS = 24
    old = submit(alice_api).json()["execution_id"]
    Execution.objects.filter(execution_id=old).update(
        created_at=timezone.now() - timedelta(hours=25)
    )

    fresh = submit(alice_api, script="print('a new day')")

    assert fresh.status_code == 202
    assert fresh.json()["execution_id"] != old
    assert Execution.objects.get(execution_id=old).idempotency_key == ""  # let go of it
    assert (
        submit(alice_api, script="print('a new day')").json()["execution_id"]
        == (fresh.json()["execution_id"])
    )


def test_people_behind_one_address_do_not_get_each_others_runs():
    """The attack: a second person behind the same NAT reuses a key and reads the first one's
    script, input and output."""
    first, second = browser(), browser()
    mine = submit(first, key="k", script="print(input())", stdin="my secret")

    theirs = submit(second, key="k", script="print(input())", stdin="my secret")

    assert (mine.status_code, theirs.status_code) == (202, 202)
    assert theirs.json()["execution_id"] != mine.json()["execution_id"]
    assert "stdin" not in theirs.json()  # a new queued run of their own, not the first one


def test_an_anonymous_key_without_a_session_is_refused():
    client = APIClient()
    r = submit(client)
    assert r.status_code == 400
    assert "session" in r.json()["Idempotency-Key"][0]
    assert not Execution.objects.exists()
    made_up = APIClient()
    made_up.cookies["sessionid"] = "a-session-that-does-not-exist"
    assert submit(made_up).status_code == 400


@pytest.mark.parametrize("key", ["a\x00b", "tab\there", "bell\x07"])
def test_a_key_with_a_control_character_is_a_400_naming_the_header(alice_api, key):
    """PostgreSQL refuses NUL in text: such a key was a 500 there."""
    r = submit(alice_api, key=key)
    assert r.status_code == 400
    assert "control character" in r.json()["Idempotency-Key"][0]
    assert not Execution.objects.exists()


def test_an_anonymous_session_replays_its_own_key():
    client = browser()
    first = submit(client)
    again = submit(client)
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["execution_id"] == again.json()["execution_id"]


def test_replays_are_throttled_like_submissions(alice_api, settings):
    settings.THROTTLE_USER = "3/min"
    assert submit(alice_api).status_code == 202
    assert [submit(alice_api).status_code for _ in range(3)] == [200, 200, 429]


def test_a_caller_holds_a_bounded_number_of_waiting_requests(alice_api, settings, monkeypatch):
    """40 wait=true replays of one key held every web thread. A caller now holds at most
    MAX_ACTIVE_PER_CALLER waits: one more, made while the others wait, is refused."""
    settings.MAX_ACTIVE_PER_CALLER = 2
    assert submit(alice_api).status_code == 202
    answers = []

    async def waiting(execution, fresh=False):
        if len(answers) < 2:  # while this request waits, another one comes in
            mine = len(answers)
            answers.append(None)
            answers[mine] = (await sync_to_async(submit)(alice_api, wait=True)).status_code
        return execution

    monkeypatch.setattr(api, "wait_for", waiting)

    outer = submit(alice_api, wait=True)

    assert outer.status_code == 200  # the first two hold the two slots ...
    assert answers == [200, 429]  # ... the third is refused while they wait
    assert submit(alice_api, wait=True).status_code == 200  # and the slots are given back

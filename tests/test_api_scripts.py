"""Saved scripts through the API: signed-in users only, each seeing only their own."""

import uuid

import pytest
from rest_framework.test import APIClient

from executions.models import SavedScript

pytestmark = pytest.mark.django_db

SCRIPTS = "/api/v1/scripts/"


@pytest.fixture
def saved(alice):
    return SavedScript.objects.create(owner=alice, name="hello", script="print('hello')")


def url(script):
    return f"{SCRIPTS}{script.script_id}/"


def test_it_saves_a_script(alice, alice_api):
    r = alice_api.post(
        SCRIPTS,
        {"name": "hello", "script": "print(1)\n", "description": "first", "python_version": ""},
        format="json",
    )
    assert r.status_code == 201
    saved = SavedScript.objects.get(script_id=r.json()["script_id"])
    assert (saved.owner, saved.name, saved.script) == (alice, "hello", "print(1)\n")


def test_it_lists_only_your_scripts(alice_api, saved, bob):
    SavedScript.objects.create(owner=bob, name="bobs", script="print(2)")
    r = alice_api.get(SCRIPTS)
    assert r.status_code == 200
    assert [s["name"] for s in r.json()["results"]] == ["hello"]


def test_it_reads_updates_and_deletes(alice_api, saved):
    assert alice_api.get(url(saved)).json()["script"] == "print('hello')"
    r = alice_api.patch(url(saved), {"description": "greets"}, format="json")
    assert (r.status_code, r.json()["description"]) == (200, "greets")
    r = alice_api.put(url(saved), {"name": "hi", "script": "print('hi')"}, format="json")
    assert (r.status_code, r.json()["name"]) == (200, "hi")
    # Renaming to its own name is not a clash.
    assert alice_api.patch(url(saved), {"name": "hi"}, format="json").status_code == 200
    assert alice_api.delete(url(saved)).status_code == 204
    assert not SavedScript.objects.exists()


def test_anonymous_callers_get_401(client, saved):
    client = APIClient()
    for r in (
        client.get(SCRIPTS),
        client.post(SCRIPTS, {"name": "x", "script": "print(1)"}, format="json"),
        client.get(url(saved)),
        client.delete(url(saved)),
    ):
        assert r.status_code == 401
        assert "credentials" in r.json()["detail"]


def test_other_users_get_404(bob_api, saved):
    assert bob_api.get(url(saved)).status_code == 404
    assert bob_api.patch(url(saved), {"name": "mine"}, format="json").status_code == 404
    assert bob_api.delete(url(saved)).status_code == 404
    saved.refresh_from_db()
    assert saved.name == "hello"


@pytest.mark.parametrize("bad", ["nope", "123", str(uuid.uuid4())])
def test_unknown_or_malformed_ids_are_404(alice_api, bad):
    r = alice_api.get(f"{SCRIPTS}{bad}/")
    assert r.status_code == 404
    assert "detail" in r.json()


def test_a_name_is_unique_per_owner(alice_api, bob_api, saved):
    r = alice_api.post(SCRIPTS, {"name": "hello", "script": "print(1)"}, format="json")
    assert r.status_code == 400
    assert "already have a saved script" in r.json()["name"][0]
    other = SavedScript.objects.create(owner=saved.owner, name="other", script="print(1)")
    r = alice_api.patch(url(other), {"name": "hello"}, format="json")
    assert (r.status_code, list(r.json())) == (400, ["name"])
    # Bob may use the same name.
    r = bob_api.post(SCRIPTS, {"name": "hello", "script": "print(1)"}, format="json")
    assert r.status_code == 201


def test_a_name_clash_race_is_a_400_not_a_500(alice_api, saved, monkeypatch):
    from executions.serializers import SavedScriptSerializer

    monkeypatch.setattr(SavedScriptSerializer, "validate_name", lambda self, value: value)
    r = alice_api.post(SCRIPTS, {"name": "hello", "script": "print(1)"}, format="json")
    assert r.status_code == 400
    assert "name" in r.json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"script": "print(1)"}, "name"),
        ({"name": "x"}, "script"),
        ({"name": "x", "script": ""}, "script"),
        ({"name": "x", "script": 5}, "script"),
        ({"name": "x" * 101, "script": "print(1)"}, "name"),
        ({"name": "x", "script": "x" * (64 * 1024 + 1)}, "script"),
        ({"name": "x", "script": "print(1)", "python_version": "2.7"}, "python_version"),
        ({"name": "x", "script": "print(1)", "description": "d" * 1001}, "description"),
        ({"name": "x", "script": "print(1)", "owner": 2}, "owner"),
        ({"name": "x", "script": "print(1)", "script_id": str(uuid.uuid4())}, "script_id"),
    ],
)
def test_bad_input_names_the_field(alice_api, body, field):
    r = alice_api.post(SCRIPTS, body, format="json")
    assert r.status_code == 400
    assert field in r.json()


def test_a_bad_partial_update_names_the_field(alice_api, saved):
    r = alice_api.patch(url(saved), {"python_version": "1.0"}, format="json")
    assert (r.status_code, list(r.json())) == (400, ["python_version"])


def test_wrong_methods_are_405(alice_api, saved):
    assert alice_api.delete(SCRIPTS).status_code == 405
    assert alice_api.post(url(saved), {}, format="json").status_code == 405


def test_a_user_holds_a_bounded_number_of_saved_scripts(client, alice, alice_api, settings):
    """Saving was not rate-limited: 128 KiB a request (script and stdin), without end."""
    settings.MAX_SAVED_SCRIPTS = 2
    first = SavedScript.objects.create(owner=alice, name="one", script="print(1)")
    assert (
        alice_api.post(SCRIPTS, {"name": "two", "script": "print(2)"}, format="json").status_code
        == 201
    )
    client.force_login(alice)

    api = alice_api.post(SCRIPTS, {"name": "three", "script": "print(3)"}, format="json")
    page = client.post("/scripts/", {"name": "three", "script": "print(3)"})
    copy = client.post(f"/scripts/{first.script_id}/duplicate")
    edit = alice_api.patch(url(first), {"name": "uno"}, format="json")

    assert api.status_code == 409 and "2 saved scripts" in api.json()["detail"]
    assert page.status_code == 400 and "Delete one" in page.content.decode()
    assert copy.status_code == 302  # back to the script, which says why
    assert "Delete one" in client.get(copy["Location"]).content.decode()
    assert edit.status_code == 200  # changing one is not making one
    assert SavedScript.objects.filter(owner=alice).count() == 2

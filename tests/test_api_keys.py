"""API keys for programs: made, named, listed and revoked on the account page and through the
API; stored hashed, shown once, last-used time; they end with the account or its password."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import ApiKey, digest
from executions.models import Execution

pytestmark = pytest.mark.django_db

KEYS = "/api/v1/auth/keys"


def with_key(key, scheme="Api-Key"):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {key}")
    return client


def make_key(alice_api, name="ci"):
    r = alice_api.post(KEYS, {"name": name}, format="json")
    assert r.status_code == 201, r.content
    return r.json()


def test_a_key_is_shown_once_and_stored_hashed(alice_api, alice):
    made = make_key(alice_api)

    assert made["key"].startswith("i8s_") and len(made["key"]) > 40
    assert made["name"] == "ci" and made["prefix"] == made["key"][:12]
    stored = ApiKey.objects.get(user=alice)
    assert stored.digest == digest(made["key"]) != made["key"]
    assert made["key"] not in str(ApiKey.objects.values().get())
    listed = alice_api.get(KEYS).json()
    assert [k["name"] for k in listed] == ["ci"]
    assert "key" not in listed[0] and listed[0]["last_used_at"] is None


@pytest.mark.parametrize("scheme", ["Api-Key", "Token", "api-key"])
def test_a_key_acts_as_its_user(alice_api, alice, scheme):
    key = make_key(alice_api)["key"]
    client = with_key(key, scheme)

    assert client.get("/api/v1/auth/me").json()["username"] == "alice"
    r = client.post("/api/v1/execute", {"script": "print(1)"}, format="json")

    assert r.status_code == 202  # no CSRF token needed
    assert Execution.objects.get().owner == alice
    assert ApiKey.objects.get().last_used_at is not None
    assert alice_api.get(KEYS).json()[0]["last_used_at"] is not None


@pytest.mark.parametrize(
    "header", ["Api-Key nope", "Api-Key", "Api-Key a b", "Token i8s_made-up", "Api-Key \xff"]
)
def test_a_wrong_key_is_a_401(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    r = client.get("/api/v1/auth/me")
    assert r.status_code == 401
    assert "detail" in r.json()


def test_a_revoked_key_stops_working(alice_api):
    made = make_key(alice_api)
    assert alice_api.delete(f"{KEYS}/{made['key_id']}").status_code == 204
    assert with_key(made["key"]).get("/api/v1/auth/me").status_code == 401
    assert alice_api.get(KEYS).json() == []


def test_keys_are_their_users_alone(alice_api, bob_api):
    made = make_key(alice_api)
    assert bob_api.get(KEYS).json() == []
    assert bob_api.delete(f"{KEYS}/{made['key_id']}").status_code == 404
    assert bob_api.delete(f"{KEYS}/not-a-uuid").status_code == 404
    assert with_key(made["key"]).get("/api/v1/auth/me").status_code == 200


def test_a_key_cannot_make_or_revoke_keys(alice_api):
    made = make_key(alice_api)
    client = with_key(made["key"])
    assert client.post(KEYS, {"name": "successor"}, format="json").status_code == 403
    assert client.get(KEYS).status_code == 403
    assert client.delete(f"{KEYS}/{made['key_id']}").status_code == 403


def test_managing_keys_needs_a_signed_in_user_and_good_input(alice_api):
    assert APIClient().get(KEYS).status_code == 401
    assert alice_api.post(KEYS, {}, format="json").status_code == 400
    r = alice_api.post(KEYS, {"name": "x" * 101}, format="json")
    assert r.status_code == 400 and "name" in r.json()
    assert alice_api.post(KEYS, {"name": "ci", "key": "mine"}, format="json").status_code == 400
    assert alice_api.put(KEYS, {}, format="json").status_code == 405


def test_keys_end_with_the_account(alice_api, alice):
    key = make_key(alice_api)["key"]
    alice.delete()
    assert with_key(key).get("/api/v1/auth/me").status_code == 401
    assert not ApiKey.objects.exists()


def test_the_schema_documents_keys_beside_jwt(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["apiKeyAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": schemes["apiKeyAuth"]["description"],
    }
    assert "Api-Key" in schemes["apiKeyAuth"]["description"]
    assert "jwtAuth" in schemes
    assert "/api/v1/auth/keys" in schema["paths"]


# --- the account page -------------------------------------------------------------------------


def test_the_account_page_makes_shows_once_and_revokes_keys(client, alice):
    client.force_login(alice)
    assert client.get(reverse("account")).status_code == 200

    response = client.post(reverse("api-key-create"), {"name": "laptop"})

    html = response.content.decode()
    assert response.status_code == 200
    stored = ApiKey.objects.get(user=alice)
    shown = html.split('data-testid="new-key"')[1].split("<code>")[1].split("</code>")[0]
    assert digest(shown) == stored.digest
    assert shown not in client.get(reverse("account")).content.decode()  # never again
    assert "laptop" in client.get(reverse("account")).content.decode()

    response = client.post(reverse("api-key-revoke", args=[stored.key_id]))
    assert response.status_code == 302
    assert not ApiKey.objects.exists()


def test_the_account_page_is_for_its_owner(client, alice, bob):
    stored, _ = ApiKey.issue(alice, "ci")
    assert client.get(reverse("account")).status_code == 302  # to log in
    client.force_login(bob)
    assert client.post(reverse("api-key-revoke", args=[stored.key_id])).status_code == 404
    assert client.get(reverse("api-key-create")).status_code == 405
    assert client.post(reverse("api-key-create"), {"name": ""}).status_code == 400
    assert ApiKey.objects.filter(user=alice).exists()


def test_a_user_holds_a_bounded_number_of_keys(client, alice, alice_api, settings):
    """Making keys was free and endless: a row per request, for as long as one cared to."""
    settings.MAX_API_KEYS = 2
    make_key(alice_api, "one")
    make_key(alice_api, "two")

    r = alice_api.post(KEYS, {"name": "three"}, format="json")
    client.force_login(alice)
    page = client.post(reverse("api-key-create"), {"name": "three"})

    assert r.status_code == 409
    assert "2 API keys" in r.json()["detail"] and "MAX_API_KEYS" not in r.json()["detail"]
    assert page.status_code == 400 and "Revoke one" in page.content.decode()
    assert ApiKey.objects.filter(user=alice).count() == 2

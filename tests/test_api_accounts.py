"""Accounts through the API: sign up, JWT tokens, who am I."""

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

REGISTER = "/api/v1/auth/register"
TOKEN = "/api/v1/auth/token"
REFRESH = "/api/v1/auth/token/refresh"
ME = "/api/v1/auth/me"


@pytest.fixture
def client():
    return APIClient()


def test_register_token_me_refresh(client, django_user_model):
    r = client.post(
        REGISTER,
        {"username": "carol", "password": "a long pass phrase", "email": "carol@example.com"},
        format="json",
    )
    assert r.status_code == 201
    body = r.json()
    assert body["user"]["username"] == "carol"
    assert "password" not in body["user"] and "id" not in body["user"]
    assert django_user_model.objects.get(username="carol").check_password("a long pass phrase")

    # The tokens from sign-up work straight away.
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    assert client.get(ME).json()["username"] == "carol"
    client.credentials()

    r = client.post(TOKEN, {"username": "carol", "password": "a long pass phrase"}, format="json")
    assert r.status_code == 200
    access, refresh = r.json()["access"], r.json()["refresh"]

    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    r = client.get(ME)
    assert r.status_code == 200
    assert r.json() == {
        "username": "carol",
        "email": "carol@example.com",
        "date_joined": r.json()["date_joined"],
    }
    client.credentials()

    r = client.post(REFRESH, {"refresh": refresh}, format="json")
    assert r.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {r.json()['access']}")
    assert client.get(ME).status_code == 200


def test_jwt_callers_own_what_they_submit(client, alice):
    r = client.post(TOKEN, {"username": "alice", "password": "alice-pass-123"}, format="json")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {r.json()['access']}")
    r = client.post("/api/v1/execute", {"script": "print(1)"}, format="json")
    assert r.status_code == 202  # no CSRF token needed with a bearer token
    from executions.models import Execution

    assert Execution.objects.get(execution_id=r.json()["execution_id"]).owner == alice


def test_session_users_are_accepted(client, alice):
    client.force_login(alice)
    assert client.get(ME).json()["username"] == "alice"


def test_email_is_optional(client):
    r = client.post(REGISTER, {"username": "dave", "password": "a long pass phrase"}, format="json")
    assert r.status_code == 201
    assert r.json()["user"]["email"] == ""


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"password": "a long pass phrase"}, "username", "required"),
        ({"username": "erin"}, "password", "required"),
        ({"username": "erin", "password": "short"}, "password", "too short"),
        ({"username": "erin", "password": "password123"}, "password", "too common"),
        ({"username": "erin", "password": "83749201846"}, "password", "entirely numeric"),
        ({"username": "erinerin", "password": "erinerin1"}, "password", "too similar"),
        ({"username": "alice", "password": "a long pass phrase"}, "username", "taken"),
        ({"username": "ALICE", "password": "a long pass phrase"}, "username", "taken"),
        ({"username": "bad name!", "password": "a long pass phrase"}, "username", "valid"),
        ({"username": 12, "password": "a long pass phrase"}, "username", "string"),
        ({"username": "x" * 151, "password": "a long pass phrase"}, "username", "150"),
        ({"username": "e", "password": "a long pass phrase", "email": "no"}, "email", "email"),
        (
            {"username": "e", "password": "a long pass phrase", "is_staff": True},
            "is_staff",
            "Unknown",
        ),
    ],
)
def test_register_names_the_field_and_the_rule(client, alice, body, field, words):
    r = client.post(REGISTER, body, format="json")
    assert r.status_code == 400
    assert words in " ".join(r.json()[field])


def test_a_username_race_is_a_400(client, alice, monkeypatch):
    """Both sign-ups passed the uniqueness check; the database refuses the second."""
    from rest_framework.validators import UniqueValidator

    monkeypatch.setattr(UniqueValidator, "__call__", lambda self, value, field: None)
    r = client.post(
        REGISTER, {"username": "alice", "password": "a long pass phrase"}, format="json"
    )
    assert r.status_code == 400
    assert "taken" in r.json()["username"][0]


def test_wrong_password_is_a_401(client, alice):
    r = client.post(TOKEN, {"username": "alice", "password": "wrong"}, format="json")
    assert r.status_code == 401
    assert "detail" in r.json()


def test_token_needs_both_fields(client):
    r = client.post(TOKEN, {"username": "alice"}, format="json")
    assert r.status_code == 400
    assert "password" in r.json()


def test_a_bad_refresh_token_is_a_401(client):
    r = client.post(REFRESH, {"refresh": "not.a.token"}, format="json")
    assert r.status_code == 401


def test_me_needs_a_signed_in_user(client):
    r = client.get(ME)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    client.credentials(HTTP_AUTHORIZATION="Bearer garbage")
    assert client.get(ME).status_code == 401


def test_wrong_methods_are_405(client, alice):
    assert client.get(REGISTER).status_code == 405
    assert client.get(TOKEN).status_code == 405
    client.force_authenticate(alice)
    assert client.post(ME, {}, format="json").status_code == 405


def test_registration_is_rate_limited_per_address(settings, django_user_model):
    from rest_framework.test import APIClient

    settings.THROTTLE_SIGNUP = "1/hour"
    client = APIClient()
    body = {"username": "carol", "password": "a-long-pass-123"}
    assert client.post("/api/v1/auth/register", body, format="json").status_code == 201

    r = client.post(
        "/api/v1/auth/register", {"username": "dave", "password": "a-long-pass-123"}, format="json"
    )

    assert r.status_code == 429
    assert "Retry-After" in r.headers and "Too many new accounts" in r.json()["detail"]
    assert not django_user_model.objects.filter(username="dave").exists()


def test_token_requests_are_rate_limited_per_address(settings, alice):
    from rest_framework.test import APIClient

    settings.THROTTLE_LOGIN = "1/min"
    client = APIClient()
    body = {"username": "alice", "password": "alice-pass-123"}
    assert client.post("/api/v1/auth/token", body, format="json").status_code == 200

    r = client.post("/api/v1/auth/token", body, format="json")

    assert r.status_code == 429
    assert "Retry-After" in r.headers and "Too many sign-in attempts" in r.json()["detail"]

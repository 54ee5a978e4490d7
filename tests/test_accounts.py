"""Sign up, log in, log out and change password through the site's own pages."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_sign_up_signs_in(client):
    assert client.get(reverse("signup")).status_code == 200
    response = client.post(
        reverse("signup"),
        {
            "username": "carol",
            "email": "c@example.com",
            "password1": "a-long-pass-42",
            "password2": "a-long-pass-42",
        },
        follow=True,
    )
    assert get_user_model().objects.filter(username="carol").exists()
    assert "Signed in as <strong>carol</strong>" in response.content.decode()


def test_sign_up_with_bad_input_shows_the_field(client, alice):
    response = client.post(
        reverse("signup"),
        {"username": "alice", "password1": "a-long-pass-42", "password2": "different-pass-42"},
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert "A user with that username already exists." in html
    assert "field--error" in html


def test_signed_in_users_skip_sign_up_and_log_in(client, alice):
    client.force_login(alice)
    assert client.get(reverse("signup"))["Location"] == reverse("editor")
    assert client.get(reverse("login"))["Location"] == reverse("editor")


def test_log_in_and_out(client, alice):
    assert client.get(reverse("login")).status_code == 200
    response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert "Please enter a correct username and password" in response.content.decode()
    response = client.post(reverse("login"), {"username": "alice", "password": "alice-pass-123"})
    assert response.status_code == 302 and response["Location"] == reverse("editor")
    assert client.get(reverse("logout")).status_code == 405
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert "Log in" in client.get(reverse("editor")).content.decode()


def test_change_password(client, alice):
    assert client.get(reverse("password_change")).status_code == 302
    client.force_login(alice)
    assert client.get(reverse("password_change")).status_code == 200
    response = client.post(
        reverse("password_change"),
        {
            "old_password": "alice-pass-123",
            "new_password1": "new-long-pass-77",
            "new_password2": "new-long-pass-77",
        },
    )
    assert response["Location"] == reverse("password_change_done")
    alice.refresh_from_db()
    assert alice.check_password("new-long-pass-77")
    assert client.get(reverse("password_change_done")).status_code == 200


def test_sign_up_is_rate_limited_per_address(client, settings, django_user_model):
    settings.THROTTLE_SIGNUP = "1/hour"
    first = {"username": "carol", "password1": "a-long-pass-123", "password2": "a-long-pass-123"}
    assert client.post("/accounts/signup/", first).status_code == 302
    client.logout()
    second = {"username": "dave", "password1": "a-long-pass-123", "password2": "a-long-pass-123"}

    response = client.post("/accounts/signup/", second)

    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert "Too many new accounts" in response.content.decode()
    assert not django_user_model.objects.filter(username="dave").exists()


def test_password_attempts_are_rate_limited_per_address(client, settings, alice):
    settings.THROTTLE_LOGIN = "2/min"
    wrong = {"username": "alice", "password": "not-her-password"}
    assert client.post("/accounts/login/", wrong).status_code == 200  # the form again, with error
    assert client.post("/accounts/login/", wrong).status_code == 200

    # Over the limit even the right password is refused: the answer gives nothing away.
    response = client.post("/accounts/login/", {"username": "alice", "password": "alice-pass-123"})

    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert "Too many sign-in attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_a_new_session_is_one_insert_and_a_taken_key_is_drawn_again(monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from integr8s import sessions

    store = sessions.SessionStore()
    store["x"] = 1
    with CaptureQueriesContext(connection) as queries:
        store.save()
    statements = [q["sql"].split()[0] for q in queries if "SAVEPOINT" not in q["sql"]]
    assert statements == ["INSERT"]  # no "is it taken?" first
    keys = iter([store.session_key, "b" * 32])
    monkeypatch.setattr(sessions, "get_random_string", lambda *a: next(keys))
    other = sessions.SessionStore()
    other.create()
    assert other.session_key == "b" * 32

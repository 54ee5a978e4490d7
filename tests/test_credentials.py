"""What a password opens ends when it changes: sessions, JWTs (access and refresh), API keys.
Refresh tokens are good for one refresh each."""

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import ApiKey


class QuickPBKDF2(PBKDF2PasswordHasher):
    iterations = 1  # a hasher to upgrade to, without a second of key stretching


pytestmark = pytest.mark.django_db

TOKEN, REFRESH, ME = "/api/v1/auth/token", "/api/v1/auth/token/refresh", "/api/v1/auth/me"
NEW = "a-new-long-pass-77"


def tokens(username="alice", password="alice-pass-123"):
    r = APIClient().post(TOKEN, {"username": username, "password": password}, format="json")
    assert r.status_code == 200, r.content
    return r.json()


def me(access=None, key=None):
    client = APIClient()
    if access:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    if key:
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client.get(ME).status_code


def refresh(token):
    return APIClient().post(REFRESH, {"refresh": token}, format="json")


def change_password_on_the_page(client):
    response = client.post(
        reverse("password_change"),
        {"old_password": "alice-pass-123", "new_password1": NEW, "new_password2": NEW},
    )
    assert response.status_code == 302


def test_a_refresh_token_is_good_for_one_refresh(alice):
    first = tokens()

    r = refresh(first["refresh"])
    assert r.status_code == 200
    rotated = r.json()["refresh"]
    assert rotated != first["refresh"]

    again = refresh(first["refresh"])  # the used one is blacklisted
    assert again.status_code == 401
    assert refresh(rotated).status_code == 200


def test_two_refreshes_of_one_token_at_once_mint_one_pair(alice, monkeypatch):
    """Both passed the blacklist check before either wrote it (two requests at once): the one
    that blacklists the token first gets new tokens, the other a 401. Before, both did, so
    a stolen refresh token used beside its owner's lived on as a second line of tokens."""
    from rest_framework_simplejwt.tokens import RefreshToken

    first = tokens()
    monkeypatch.setattr(RefreshToken, "check_blacklist", lambda self: None)  # the other ran it

    answers = [refresh(first["refresh"]) for _ in range(2)]

    assert [r.status_code for r in answers] == [200, 401]
    assert "used" in answers[1].json()["detail"]


def test_a_password_change_ends_every_token_key_and_other_session(client, alice):
    old = tokens()
    _, key = ApiKey.issue(alice, "ci")
    elsewhere = Client()
    elsewhere.force_login(alice)
    assert me(old["access"]) == me(key=key) == 200
    client.force_login(alice)

    change_password_on_the_page(client)

    assert me(old["access"]) == 401  # the access token carried the old password's digest
    assert refresh(old["refresh"]).status_code == 401  # blacklisted, and minted nothing
    assert me(key=key) == 401
    assert not ApiKey.objects.filter(user=alice).exists()
    assert elsewhere.get(ME).status_code == 401  # the other session ended
    assert elsewhere.get(reverse("account")).status_code == 302  # sent to log in
    assert client.get(reverse("account")).status_code == 200  # the page that changed it stays
    assert me(tokens(password=NEW)["access"]) == 200


def test_a_refresh_token_from_before_a_password_change_mints_nothing(alice):
    old = tokens()
    rotated = refresh(old["refresh"]).json()["refresh"]
    alice.set_password(NEW)
    alice.save()

    r = refresh(rotated)

    assert r.status_code == 401
    assert "access" not in r.json()


def test_a_password_set_anywhere_ends_the_credentials(alice):
    """Not only the page: the admin, a reset link, manage.py changepassword all save through
    set_password()."""
    old = tokens()
    _, key = ApiKey.issue(alice, "ci")
    alice.set_password(NEW)
    alice.save()
    assert me(old["access"]) == 401 and me(key=key) == 401


def test_an_unusable_password_ends_them_too(alice):
    old = tokens()
    alice.set_unusable_password()
    alice.save()
    assert me(old["access"]) == 401
    assert refresh(old["refresh"]).status_code == 401


def test_a_password_hash_upgrade_at_sign_in_is_not_a_change(alice, settings):
    """Django rehashes a password when its hasher changes: the password is the same."""
    _, key = ApiKey.issue(alice, "ci")
    settings.PASSWORD_HASHERS = [
        "tests.test_credentials.QuickPBKDF2",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    assert alice.check_password("alice-pass-123")  # upgrades the MD5 hash to PBKDF2
    assert alice.password.startswith("pbkdf2_sha256$")
    assert me(key=key) == 200


def test_a_deleted_accounts_refresh_token_is_a_401(alice):
    old = tokens()
    alice.delete()
    r = refresh(old["refresh"])
    assert r.status_code == 401
    assert me(old["access"]) == 401

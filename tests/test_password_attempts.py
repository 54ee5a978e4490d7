"""One limit (THROTTLE_LOGIN per address) for every way to present a password: the site's
login page, the admin's, the API's token endpoint, changing a password, deleting an account."""

import pytest
from django.core.cache import cache
from django.urls import reverse
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

WRONG = "not-the-password"


@pytest.fixture
def limit(settings):
    settings.THROTTLE_LOGIN = "3/min"


def test_the_admin_login_is_limited_too(client, limit, django_user_model):
    django_user_model.objects.create_superuser("root", "root@example.com", "root-pass-123")
    url = reverse("admin:login")
    for _ in range(3):
        assert client.post(url, {"username": "root", "password": WRONG}).status_code == 200

    response = client.post(url, {"username": "root", "password": "root-pass-123"})

    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert "Too many sign-in attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_one_count_for_every_way_in(client, limit, alice):
    """Attempts on the site, the admin and the API add up: they are one address's guesses."""
    assert (
        client.post(reverse("login"), {"username": "alice", "password": WRONG}).status_code == 200
    )
    admin = client.post(reverse("admin:login"), {"username": "alice", "password": WRONG})
    assert admin.status_code == 200
    api = APIClient()
    wrong = {"username": "alice", "password": WRONG}
    assert api.post("/api/v1/auth/token", wrong, format="json").status_code == 401

    right = {"username": "alice", "password": "alice-pass-123"}
    r = api.post("/api/v1/auth/token", right, format="json")

    assert r.status_code == 429
    assert "Too many sign-in attempts" in r.json()["detail"] and "Retry-After" in r.headers


def test_the_old_password_on_the_change_page_is_a_counted_attempt(client, limit, alice):
    client.force_login(alice)
    url = reverse("password_change")
    guess = {
        "old_password": WRONG,
        "new_password1": "n3w-long-pass",
        "new_password2": "n3w-long-pass",
    }
    for _ in range(3):
        assert client.post(url, guess).status_code == 200  # the form again, with its error

    right = {**guess, "old_password": "alice-pass-123"}
    response = client.post(url, right)

    assert response.status_code == 429
    alice.refresh_from_db()
    assert alice.check_password("alice-pass-123")


def test_the_old_password_on_the_admins_change_page_is_a_counted_attempt(
    client, limit, django_user_model
):
    """The admin has a "Change password" page of its own; it checked the old password
    uncounted, so a stolen staff session could guess it without limit."""
    root = django_user_model.objects.create_superuser("root", "root@example.com", "root-pass-123")
    client.force_login(root)
    url = reverse("admin:password_change")
    guess = {
        "old_password": WRONG,
        "new_password1": "n3w-long-pass",
        "new_password2": "n3w-long-pass",
    }
    for _ in range(3):
        response = client.post(url, guess)
        assert response.status_code == 200
        assert "site-name" in response.content.decode()  # still the admin's page

    response = client.post(url, {**guess, "old_password": "root-pass-123"})

    assert response.status_code == 429
    root.refresh_from_db()
    assert root.check_password("root-pass-123")
    cache.clear()
    response = client.post(url, {**guess, "old_password": "root-pass-123"})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:password_change_done")


def test_the_password_to_delete_an_account_is_a_counted_attempt(client, limit, alice):
    client.force_login(alice)
    for _ in range(3):
        response = client.post(reverse("account-delete"), {"password": WRONG})
        assert response.status_code == 400
        assert "That is not your password." in response.content.decode()

    response = client.post(reverse("account-delete"), {"password": "alice-pass-123"})

    assert response.status_code == 429
    assert type(alice).objects.filter(pk=alice.pk).exists()


def test_other_addresses_are_counted_apart(limit, alice):
    for _ in range(3):
        APIClient(REMOTE_ADDR="10.0.0.1").post(
            "/api/v1/auth/token", {"username": "alice", "password": WRONG}, format="json"
        )
    r = APIClient(REMOTE_ADDR="10.0.0.2").post(
        "/api/v1/auth/token", {"username": "alice", "password": "alice-pass-123"}, format="json"
    )
    assert r.status_code == 200


def test_the_addresses_of_one_ipv6_network_are_counted_together(limit, alice):
    """One line gets a whole IPv6 /64: a new address for each guess walked past the limit."""
    for n in range(3):
        APIClient(REMOTE_ADDR=f"2001:db8::{n + 1}").post(
            "/api/v1/auth/token", {"username": "alice", "password": WRONG}, format="json"
        )
    right = {"username": "alice", "password": "alice-pass-123"}
    same_line = APIClient(REMOTE_ADDR="2001:db8::ffff:4")
    assert same_line.post("/api/v1/auth/token", right, format="json").status_code == 429
    another_line = APIClient(REMOTE_ADDR="2001:db8:0:1::1")
    assert another_line.post("/api/v1/auth/token", right, format="json").status_code == 200


def test_a_form_without_a_password_is_not_an_attempt(client, limit, alice):
    for _ in range(5):
        assert client.post(reverse("login"), {"username": "alice"}).status_code == 200
    response = client.post(reverse("login"), {"username": "alice", "password": "alice-pass-123"})
    assert response.status_code == 302

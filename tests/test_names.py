"""Names that look alike are one name: user names after NFKC and case folding, saved-script
names case-insensitively, decided by one database constraint on every path."""

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import User
from executions.models import SavedScript

pytestmark = pytest.mark.django_db

REGISTER = "/api/v1/auth/register"
PASSWORD = "a long pass phrase"


@pytest.fixture
def rtadmin(django_user_model):
    return django_user_model.objects.create_user("rtadmin", "", "rtadmin-pass-123")


@pytest.mark.parametrize("look_alike", ["ＲＴadmin", "RTadmin", "RTADMIN", "ｒｔａｄｍｉｎ"])
def test_the_api_refuses_a_look_alike_user_name(rtadmin, look_alike):
    r = APIClient().post(REGISTER, {"username": look_alike, "password": PASSWORD}, format="json")
    assert r.status_code == 400
    assert "taken" in r.json()["username"][0]
    assert User.objects.count() == 1


# Cyrillic "а" (U+0430) and "ԁ" (U+0501) in place of Latin letters: NFKC leaves them as they
# are and they fold to another name, so only a Latin-only rule keeps them from posing as admin.
CROSS_SCRIPT = ["\u0430dmin", "a\u0501min", "rt\u0430dmin"]


@pytest.mark.parametrize("look_alike", CROSS_SCRIPT)
def test_the_api_refuses_a_name_in_another_script_that_reads_as_a_latin_one(rtadmin, look_alike):
    r = APIClient().post(REGISTER, {"username": look_alike, "password": PASSWORD}, format="json")
    assert r.status_code == 400
    assert "valid username" in r.json()["username"][0]
    assert User.objects.count() == 1


@pytest.mark.parametrize("look_alike", CROSS_SCRIPT)
def test_the_sign_up_page_refuses_a_name_in_another_script(client, rtadmin, look_alike):
    response = client.post(
        reverse("signup"),
        {"username": look_alike, "password1": "a-long-pass-42", "password2": "a-long-pass-42"},
    )
    assert response.status_code == 400
    assert "valid username" in response.content.decode()
    assert User.objects.count() == 1


@pytest.mark.parametrize("look_alike", ["ＲＴadmin", "RTADMIN"])
def test_the_sign_up_page_refuses_a_look_alike_user_name(client, rtadmin, look_alike):
    response = client.post(
        reverse("signup"),
        {"username": look_alike, "password1": "a-long-pass-42", "password2": "a-long-pass-42"},
    )
    assert response.status_code == 400
    assert "A user with that username already exists." in response.content.decode()
    assert User.objects.count() == 1


def test_the_admin_refuses_a_look_alike_user_name(client, rtadmin, django_user_model):
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    response = client.post(
        reverse("admin:accounts_user_add"),
        {
            "username": "ＲＴＡＤＭＩＮ",
            "password1": "a-long-pass-42",
            "password2": "a-long-pass-42",
        },
    )
    assert response.status_code == 200  # the form again, with the error
    assert "A user with that username already exists." in response.content.decode()
    change = client.post(
        reverse("admin:accounts_user_change", args=[root.pk]),
        {"username": "RTAdmin", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"},
    )
    assert "A user with that username already exists." in change.content.decode()
    root.refresh_from_db()
    assert root.username == "root"


def test_the_name_is_normalised_before_it_is_checked_and_stored():
    r = APIClient().post(REGISTER, {"username": "ＲＴadmin", "password": PASSWORD}, format="json")
    assert r.status_code == 201
    assert r.json()["user"]["username"] == "RTadmin"
    assert User.objects.get().username_key == "rtadmin"


def test_the_database_refuses_a_look_alike_whatever_path_saves_it(rtadmin):
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user("ＲＴＡdmin", "", "x")
    look_alike = User(username="someone")
    look_alike.save()
    look_alike.username = "RtAdmin"
    with pytest.raises(IntegrityError), transaction.atomic():
        look_alike.save(update_fields=["username"])


def test_sign_in_finds_the_name_however_it_is_written(client, rtadmin):
    api = APIClient()
    r = api.post(
        "/api/v1/auth/token",
        {"username": "ＲＴadmin", "password": "rtadmin-pass-123"},
        format="json",
    )
    assert r.status_code == 200
    response = client.post(
        reverse("login"), {"username": "RTADMIN", "password": "rtadmin-pass-123"}
    )
    assert response.status_code == 302


# --- saved scripts ----------------------------------------------------------------------------


def test_the_api_refuses_a_script_name_that_differs_only_in_case(alice, alice_api):
    body = {"name": "Foo", "script": "print(1)"}
    assert alice_api.post("/api/v1/scripts/", body, format="json").status_code == 201

    r = alice_api.post("/api/v1/scripts/", {**body, "name": "foo"}, format="json")

    assert r.status_code == 400
    assert "already have a saved script" in r.json()["name"][0]
    assert SavedScript.objects.count() == 1


def test_renaming_through_the_api_is_held_to_the_same_rule(alice, alice_api):
    SavedScript.objects.create(owner=alice, name="Foo", script="print(1)")
    other = SavedScript.objects.create(owner=alice, name="Bar", script="print(2)")
    r = alice_api.patch(f"/api/v1/scripts/{other.script_id}/", {"name": "FOO"}, format="json")
    assert r.status_code == 400
    assert (
        alice_api.patch(
            f"/api/v1/scripts/{other.script_id}/", {"name": "bar"}, format="json"
        ).status_code
        == 200
    )  # its own name, in another case, is still its own


def test_the_database_decides_script_names_case_insensitively(alice, bob):
    SavedScript.objects.create(owner=alice, name="Foo", script="print(1)")
    SavedScript.objects.create(owner=bob, name="foo", script="print(1)")  # another owner: fine
    with pytest.raises(IntegrityError), transaction.atomic():
        SavedScript.objects.create(owner=alice, name="FOO", script="print(1)")


def test_form_and_api_agree(alice, alice_api, client):
    SavedScript.objects.create(owner=alice, name="Sorter", script="print(1)")
    client.force_login(alice)
    page = client.post(reverse("scripts"), {"name": "SORTER", "script": "print(2)"})
    api = alice_api.post(
        "/api/v1/scripts/", {"name": "SORTER", "script": "print(2)"}, format="json"
    )
    assert (page.status_code, api.status_code) == (400, 400)

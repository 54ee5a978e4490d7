"""What made pages answer 500: a malformed HX-Current-URL on "Run again", and two requests
taking one name at once (duplicate, save as, rename, sign-up). The database's constraint
decides; the page answers with the form's own error (or 409), never a 500."""

import pytest
from django.urls import reverse

from accounts import forms as account_forms
from executions.models import Execution, SavedScript
from tests.conftest import run_of

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.mark.parametrize("current", ["http://[", "http://[::1", "://", "\x00"])
def test_run_again_with_a_malformed_current_url_is_not_a_500(client, current):
    old = run_of(status="completed", exit_code=0)

    response = client.post(
        reverse("execution-retry", args=[old.execution_id]), HTTP_HX_CURRENT_URL=current, **HTMX
    )

    assert response.status_code == 200
    assert "HX-Push-Url" not in response
    assert Execution.objects.filter(retry_of=old).count() == 1


def test_run_again_of_a_run_still_going_makes_nothing(client):
    """Asked before the new run exists, as on the API and in the admin."""
    old = run_of(status="running")
    response = client.post(reverse("execution-retry", args=[old.execution_id]), **HTMX)
    assert response.status_code == 400
    assert "still running" in response.content.decode()
    assert Execution.objects.count() == 1


@pytest.fixture
def race(monkeypatch):
    """The other request took the name between our check and our write: the check says free."""
    monkeypatch.setattr(SavedScript, "name_taken", classmethod(lambda cls, *a, **k: False))


def test_save_as_a_name_taken_a_moment_ago(client, alice, race):
    SavedScript.objects.create(owner=alice, name="Sorter", script="print(1)")
    client.force_login(alice)
    data = {"name": "sorter", "script": "print(2)", "python_version": ""}

    page = client.post(reverse("scripts"), data)
    fragment = client.post(reverse("scripts"), data, **HTMX)

    assert (page.status_code, fragment.status_code) == (400, 400)
    assert "You already have a script called “sorter”." in page.content.decode()
    assert "You already have a script called" in fragment.content.decode()
    assert SavedScript.objects.count() == 1


def test_rename_to_a_name_taken_a_moment_ago(client, alice, race):
    SavedScript.objects.create(owner=alice, name="Sorter", script="print(1)")
    other = SavedScript.objects.create(owner=alice, name="Other", script="print(2)")
    client.force_login(alice)

    response = client.post(reverse("script-detail", args=[other.script_id]), {"name": "SORTER"})

    assert response.status_code == 400
    assert "You already have a script called" in response.content.decode()
    other.refresh_from_db()
    assert other.name == "Other"


def test_duplicate_picks_the_next_name_when_one_is_taken_meanwhile(client, alice, monkeypatch):
    from django.db import transaction

    from executions import views

    saved = SavedScript.objects.create(owner=alice, name="Sorter", script="print(1)")

    class AnotherRequestFirst:
        """A concurrent duplicate commits "SORTER (COPY)" just before our insert."""

        def atomic(self):
            if not SavedScript.objects.filter(name="SORTER (COPY)").exists():
                SavedScript.objects.create(owner=alice, name="SORTER (COPY)", script="print(1)")
            return transaction.atomic()

    monkeypatch.setattr(views, "transaction", AnotherRequestFirst())
    client.force_login(alice)

    response = client.post(reverse("script-duplicate", args=[saved.script_id]))

    assert response.status_code == 302
    names = sorted(SavedScript.objects.values_list("name", flat=True))
    assert names == ["SORTER (COPY)", "Sorter", "Sorter (copy) 2"]


def test_sign_up_with_a_name_taken_a_moment_ago(client, alice, monkeypatch):
    monkeypatch.setattr(
        account_forms.FoldedUsernameMixin,
        "clean_username",
        lambda self: self.cleaned_data["username"],
    )
    response = client.post(
        reverse("signup"),
        {"username": "alice", "password1": "a-long-pass-42", "password2": "a-long-pass-42"},
    )
    assert response.status_code == 400
    assert "A user with that username already exists." in response.content.decode()
    assert "_auth_user_id" not in client.session

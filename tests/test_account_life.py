"""An account's life: runs made anonymously come along at sign-up and log-in, a forgotten
password is reset by e-mail, and an account can be deleted with everything it owns."""

import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import ApiKey, User
from executions.models import ANONYMOUS_RUNS, Execution, SavedScript
from tests.conftest import run_of

pytestmark = pytest.mark.django_db


def anonymous_runs(client, n=2):
    for i in range(n):
        client.post(reverse("run"), {"script": f"print({i})"})
    runs = Execution.objects.filter(owner=None, session_key=client.session[ANONYMOUS_RUNS])
    assert runs.count() == n
    return list(runs)


def test_runs_made_before_signing_up_become_the_accounts(client):
    mine = anonymous_runs(client)
    someone_elses = anonymous_runs(Client(), n=1)

    client.post(
        reverse("signup"),
        {"username": "carol", "password1": "a-long-pass-42", "password2": "a-long-pass-42"},
    )

    carol = User.objects.get(username="carol")
    assert set(Execution.objects.filter(owner=carol)) == set(mine)
    assert Execution.objects.get(pk=someone_elses[0].pk).owner is None
    html = client.get(reverse("history")).content.decode()
    assert all(run.get_absolute_url() in html for run in mine)
    cancel = client.post(reverse("execution-cancel", args=[mine[0].execution_id]))
    assert cancel.status_code == 302  # still theirs to control


def test_runs_made_before_logging_in_become_the_accounts(client, alice):
    mine = anonymous_runs(client)
    response = client.post(reverse("login"), {"username": "alice", "password": "alice-pass-123"})
    assert response.status_code == 302
    assert Execution.objects.filter(owner=alice).count() == len(mine)
    fair = {run.caller for run in Execution.objects.filter(owner=alice)}
    assert fair == {f"user:{alice.pk}"}  # fair scheduling counts them as hers now


def test_runs_made_through_the_api_come_along_too(client, alice):
    api = APIClient()
    r = api.post("/api/v1/execute", {"script": "print(1)"}, format="json")
    assert r.status_code == 202
    assert api.post(reverse("login"), {"username": "alice", "password": "alice-pass-123"})
    assert Execution.objects.get(execution_id=r.json()["execution_id"]).owner == alice


def test_a_key_used_both_signed_in_and_anonymously_does_not_stop_the_log_in(client, alice):
    """Alice used "nightly" signed in, then, signed out, again in this browser: both runs are
    hers after she logs in, and the key stays with the one she made signed in: two of her runs
    holding one key was an IntegrityError, a 500 on log-in."""
    headers = {"Idempotency-Key": "nightly"}
    signed_in = APIClient()
    signed_in.force_authenticate(alice)
    first = signed_in.post("/api/v1/execute", {"script": "print(1)"}, headers=headers)
    assert first.status_code == 202
    client.get("/")
    client.session.save()
    anonymous = client.post(
        "/api/v1/execute", {"script": "print(2)"}, content_type="application/json", headers=headers
    )
    assert anonymous.status_code == 202

    response = client.post(reverse("login"), {"username": "alice", "password": "alice-pass-123"})

    assert response.status_code == 302
    assert Execution.objects.filter(owner=alice).count() == 2
    kept = Execution.objects.get(owner=alice, idempotency_key="nightly")
    assert kept.script == "print(1)"


def test_a_forgotten_password_is_reset_by_e_mail(client, alice, bob):
    from tests.test_credentials import me, tokens

    old = tokens()
    response = client.post(reverse("password_reset"), {"email": "alice@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["alice@example.com"]
    link = re.search(r"https?://\S+", mail.outbox[0].body).group(0)

    form = client.get(link, follow=True)
    assert form.status_code == 200 and "Choose a new password" in form.content.decode()
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "a-fresh-pass-99", "new_password2": "a-fresh-pass-99"},
    )

    assert done.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("a-fresh-pass-99")
    assert me(old["access"]) == 401  # a reset ends what the old password opened
    assert client.get(link, follow=True).context["validlink"] is False  # used once


def test_a_reset_for_an_unknown_address_says_the_same(client):
    response = client.post(reverse("password_reset"), {"email": "nobody@example.com"})
    assert response.status_code == 302 and response["Location"] == reverse("password_reset_done")
    assert mail.outbox == []


def test_reset_e_mails_are_limited_per_address(client, alice, settings):
    settings.THROTTLE_SIGNUP = "1/hour"
    assert client.post(reverse("password_reset"), {"email": "alice@example.com"}).status_code == 302
    response = client.post(reverse("password_reset"), {"email": "alice@example.com"})
    assert response.status_code == 429
    assert len(mail.outbox) == 1


def test_delete_my_account_deletes_its_runs_scripts_and_keys(client, alice, bob):
    run_of(owner=alice)
    SavedScript.objects.create(owner=alice, name="Mine", script="print(1)")
    ApiKey.issue(alice, "ci")
    theirs = run_of(owner=bob)
    client.force_login(alice)

    response = client.post(reverse("account-delete"), {"password": "alice-pass-123"})

    assert response.status_code == 302 and response["Location"] == reverse("editor")
    assert not User.objects.filter(username="alice").exists()
    assert not Execution.objects.filter(owner_id=alice.pk).exists()
    assert not SavedScript.objects.exists() and not ApiKey.objects.exists()
    assert Execution.objects.filter(pk=theirs.pk).exists()
    assert "_auth_user_id" not in client.session


def test_delete_needs_the_password_and_a_post(client, alice):
    client.force_login(alice)
    assert client.get(reverse("account-delete")).status_code == 405
    response = client.post(reverse("account-delete"), {"password": "wrong"})
    assert response.status_code == 400
    assert "That is not your password." in response.content.decode()
    assert User.objects.filter(pk=alice.pk).exists()
    client.logout()
    assert client.post(reverse("account-delete"), {"password": "alice-pass-123"}).status_code == 302
    assert User.objects.filter(pk=alice.pk).exists()  # sent to log in, nothing deleted

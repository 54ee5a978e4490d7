"""Share links for runs and saved scripts (read-only, revocable), and stdin kept with a saved
script (issue 12)."""

import pytest
from django.urls import reverse

from executions.models import SavedScript
from tests.conftest import run_of

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def saved_of(owner, **fields):
    fields.setdefault("script", "print(input())")
    return SavedScript.objects.create(owner=owner, name="Echo", **fields)


def share_url(item):
    if isinstance(item, SavedScript):
        return reverse("script-share", args=[item.script_id])
    return reverse("execution-share", args=[item.execution_id])


def test_the_owner_shares_a_run_and_anyone_reads_it(client, alice):
    run = run_of(owner=alice, status="completed", exit_code=0, output="for you")
    client.force_login(alice)
    response = client.post(share_url(run), {"share": "on"}, **HTMX)
    run.refresh_from_db()
    assert response.status_code == 200 and len(run.share_token) >= 32
    assert run.get_share_url() in response.content.decode()

    client.logout()
    assert client.get(run.get_absolute_url()).status_code == 404
    html = client.get(run.get_share_url()).content.decode()
    assert "for you" in html
    assert f"/?shared-run={run.share_token}" in html
    assert "Run again" not in html and "Stop sharing" not in html
    editor = client.get(f"/?shared-run={run.share_token}").content.decode()
    assert "print(&#x27;hi&#x27;)" in editor


def test_stopping_sharing_breaks_the_link(client, alice):
    run = run_of(owner=alice, status="completed", exit_code=0)
    client.force_login(alice)
    client.post(share_url(run), {"share": "on"})
    run.refresh_from_db()
    link = run.get_share_url()
    response = client.post(share_url(run), {"share": "off"})
    assert response.status_code == 302
    assert client.get(link).status_code == 404
    assert client.get(f"/?shared-run={link.split('/')[-2]}").status_code == 404


def test_a_shared_running_run_polls_its_share_link(client, alice):
    run = run_of(owner=alice, status="running", share_token="t" * 32)
    html = client.get(run.get_share_url()).content.decode()
    assert f'hx-get="{run.get_share_url()}"' in html
    response = client.get(run.get_share_url(), HTTP_HX_REQUEST="true", HTTP_HX_TARGET="live")
    assert response.content.decode().strip().startswith('<div id="live"')


def test_only_the_owner_shares(client, alice, bob):
    run = run_of(owner=alice, status="completed")
    saved = saved_of(alice)
    assert client.post(share_url(run), {"share": "on"}).status_code == 404  # anonymous
    assert client.post(share_url(saved), {"share": "on"}).status_code == 302  # to log in
    client.force_login(bob)
    assert client.post(share_url(run), {"share": "on"}).status_code == 404
    assert client.post(share_url(saved), {"share": "on"}).status_code == 404
    run.refresh_from_db()
    saved.refresh_from_db()
    assert run.share_token == "" and saved.share_token == ""


def test_share_wants_post(client, alice):
    client.force_login(alice)
    run = run_of(owner=alice, status="completed")
    assert client.get(share_url(run)).status_code == 405
    assert client.get(share_url(saved_of(alice))).status_code == 405
    assert client.post(reverse("shared-execution", args=["x" * 32])).status_code == 405
    assert client.post(reverse("shared-script", args=["x" * 32])).status_code == 405


def test_bad_share_input_is_400(client, alice):
    client.force_login(alice)
    run = run_of(owner=alice, status="completed")
    response = client.post(share_url(run), {"share": "maybe"})
    assert response.status_code == 400 and "share" in response.content.decode()
    assert client.post(share_url(saved_of(alice)), {}).status_code == 400


def test_an_unknown_share_token_is_404(client):
    assert client.get(reverse("shared-execution", args=["nope"])).status_code == 404
    assert client.get(reverse("shared-script", args=["nope"])).status_code == 404
    assert client.get("/?shared-script=").status_code == 404


def test_a_shared_script_opens_signed_out(client, alice):
    saved = saved_of(alice, stdin="Ada\n")
    client.force_login(alice)
    client.post(share_url(saved), {"share": "on"})
    saved.refresh_from_db()
    client.logout()
    html = client.get(saved.get_share_url()).content.decode()
    assert "print(input())" in html and "Ada" in html
    editor = client.get(f"/?shared-script={saved.share_token}").content.decode()
    assert "print(input())" in editor and "Ada\n</textarea>" in editor


def test_stdin_is_saved_with_a_script_and_opens_with_it(client, alice):
    client.force_login(alice)
    response = client.post(
        reverse("scripts"),
        {"name": "Greeter", "script": "print(input())", "python_version": "", "stdin": "Ada\n"},
    )
    saved = SavedScript.objects.get(name="Greeter")
    assert response.status_code == 302 and saved.stdin == "Ada\n"
    editor = client.get(f"/?script={saved.script_id}").content.decode()
    assert "Ada\n</textarea>" in editor


def test_delete_on_a_scripts_own_page_asks_first(client, alice):
    saved = saved_of(alice)
    client.force_login(alice)
    html = client.get(saved.get_absolute_url()).content.decode()
    assert 'data-confirm="Delete “Echo”? This cannot be undone."' in html


def test_a_copy_of_a_saved_script_keeps_its_stdin(client, alice):
    saved = saved_of(alice, stdin="Ada\n")
    client.force_login(alice)
    client.post(reverse("script-duplicate", args=[saved.script_id]))
    assert SavedScript.objects.get(name="Echo (copy)").stdin == "Ada\n"


def test_the_api_saves_and_returns_a_scripts_stdin(alice, alice_api, settings):
    created = alice_api.post(
        "/api/v1/scripts/",
        {"name": "Greeter", "script": "print(input())", "stdin": "Ada\n"},
        format="json",
    )
    assert created.status_code == 201 and created.json()["stdin"] == "Ada\n"
    saved = SavedScript.objects.get(name="Greeter")
    assert saved.stdin == "Ada\n"
    assert alice_api.get(f"/api/v1/scripts/{saved.script_id}/").json()["stdin"] == "Ada\n"
    settings.LIMITS = {**settings.LIMITS, "stdin_kb": 1}
    too_big = alice_api.patch(
        f"/api/v1/scripts/{saved.script_id}/", {"stdin": "x" * 2000}, format="json"
    )
    assert too_big.status_code == 400 and "stdin" in too_big.json()

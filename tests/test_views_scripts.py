"""Saved scripts: save from the editor, open, rename, duplicate, delete (signed-in only)."""

import pytest
from django.urls import reverse

from executions.models import SavedScript

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def saved_of(owner, name="Sorter", **fields):
    fields.setdefault("script", "print(sorted([3, 1, 2]))")
    return SavedScript.objects.create(owner=owner, name=name, **fields)


def test_anonymous_visitors_are_sent_to_log_in(client, alice):
    saved = saved_of(alice)
    for url in [
        reverse("scripts"),
        saved.get_absolute_url(),
    ]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    response = client.post(reverse("scripts"), {"name": "x", "script": "print(1)"})
    assert response.status_code == 302
    assert not SavedScript.objects.filter(name="x").exists()


def test_the_list_shows_only_own_scripts(client, alice, bob):
    saved_of(alice, "Alice's")
    saved_of(bob, "Bob's")
    client.force_login(alice)
    html = client.get(reverse("scripts")).content.decode()
    assert "Alice&#x27;s" in html and "Bob&#x27;s" not in html


def test_save_from_the_editor_without_js(client, alice):
    client.force_login(alice)
    response = client.post(
        reverse("scripts"),
        {
            "name": " Fizz ",
            "description": "d",
            "script": "print('fizz')",
            "python_version": "3.12",
            "stdin": "ignored",
        },
    )
    saved = SavedScript.objects.get()
    assert response.status_code == 302 and response["Location"] == saved.get_absolute_url()
    assert (saved.owner, saved.name, saved.script, saved.python_version) == (
        alice,
        "Fizz",
        "print('fizz')",
        "3.12",
    )


def test_save_from_the_editor_with_htmx(client, alice):
    client.force_login(alice)
    response = client.post(
        reverse("scripts"),
        {"name": "Fizz", "script": "print(1)", "python_version": "3.12"},
        **HTMX,
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and "Saved as" in html
    assert "script-saved" in response["HX-Trigger"]


@pytest.mark.parametrize(
    "data, field, message",
    [
        ({"name": "", "script": "print(1)"}, "name", "This field is required"),
        ({"name": "Taken", "script": "print(1)"}, "name", "You already have a script called"),
        ({"name": "Empty", "script": "  "}, "script", "The script is empty"),
        (
            {"name": "Old", "script": "print(1)", "python_version": "2.0"},
            "python_version",
            "is not available",
        ),
    ],
)
def test_bad_input_names_the_field(client, alice, data, field, message):
    saved_of(alice, "Taken")
    client.force_login(alice)
    response = client.post(reverse("scripts"), data, **HTMX)
    html = response.content.decode()
    assert response.status_code == 400
    assert f'data-field="{field}"' in html and message in html
    assert "<html" not in html
    response = client.post(reverse("scripts"), data)
    assert response.status_code == 400 and message in response.content.decode()
    assert SavedScript.objects.count() == 1


def test_a_saved_script_is_for_its_owner_only(client, alice, bob):
    saved = saved_of(alice)
    client.force_login(bob)
    assert client.get(saved.get_absolute_url()).status_code == 404
    assert client.post(saved.get_absolute_url(), {"name": "Mine now"}).status_code == 404
    assert client.post(reverse("script-duplicate", args=[saved.script_id])).status_code == 404
    assert client.post(reverse("script-delete", args=[saved.script_id])).status_code == 404
    assert SavedScript.objects.get().name == "Sorter"


def test_the_owner_opens_it(client, alice):
    saved = saved_of(alice, script="print('<b>x</b>')")
    client.force_login(alice)
    html = client.get(saved.get_absolute_url()).content.decode()
    assert "Sorter" in html
    assert "print(&#x27;&lt;b&gt;x&lt;/b&gt;&#x27;)" in html
    assert f"/?script={saved.script_id}" in html


def test_rename(client, alice):
    saved = saved_of(alice)
    saved_of(alice, "Other")
    client.force_login(alice)
    response = client.post(saved.get_absolute_url(), {"name": "Renamed", "description": "new"})
    assert response.status_code == 302
    saved.refresh_from_db()
    assert (saved.name, saved.description) == ("Renamed", "new")

    response = client.post(saved.get_absolute_url(), {"name": "Again"}, **HTMX)
    assert response.status_code == 200
    assert response.content.decode().strip().startswith('<div id="script-about"')

    response = client.post(saved.get_absolute_url(), {"name": "other"}, **HTMX)
    assert response.status_code == 400
    assert "You already have a script called" in response.content.decode()
    saved.refresh_from_db()
    assert saved.name == "Again"


def test_duplicate(client, alice):
    saved = saved_of(alice)
    client.force_login(alice)
    url = reverse("script-duplicate", args=[saved.script_id])
    assert client.get(url).status_code == 405
    client.post(url)
    response = client.post(url)
    names = sorted(SavedScript.objects.values_list("name", flat=True))
    assert names == ["Sorter", "Sorter (copy)", "Sorter (copy) 2"]
    assert (
        response["Location"] == SavedScript.objects.get(name="Sorter (copy) 2").get_absolute_url()
    )


def test_delete(client, alice):
    first, second = saved_of(alice), saved_of(alice, "Second")
    client.force_login(alice)
    assert client.get(reverse("script-delete", args=[first.script_id])).status_code == 405
    response = client.post(reverse("script-delete", args=[first.script_id]))
    assert response.status_code == 302 and response["Location"] == reverse("scripts")
    response = client.post(reverse("script-delete", args=[second.script_id]), **HTMX)
    assert response.status_code == 200 and response.content == b""
    assert not SavedScript.objects.exists()


def test_wrong_method_on_the_list(client, alice):
    client.force_login(alice)
    assert client.put(reverse("scripts")).status_code == 405
    assert client.delete(saved_of(alice).get_absolute_url()).status_code == 405


def test_save_changes_from_the_editor(client, alice):
    saved = saved_of(alice)
    client.force_login(alice)
    html = client.get("/", {"script": str(saved.script_id)}).content.decode()
    assert f'hx-post="{saved.get_absolute_url()}"' in html and "Save changes" in html
    response = client.post(
        saved.get_absolute_url(),
        {"name": "Sorter", "script": "print('v2')", "python_version": "3.12"},
        **HTMX,
    )
    assert response.status_code == 200 and "Saved as" in response.content.decode()
    saved.refresh_from_db()
    assert (saved.script, saved.python_version) == ("print('v2')", "3.12")

    response = client.post(saved.get_absolute_url(), {"name": "Sorter", "script": ""}, **HTMX)
    assert response.status_code == 400 and "The script is empty" in response.content.decode()
    response = client.post(saved.get_absolute_url(), {"name": "Sorter", "script": "print(3)"})
    assert response.status_code == 302
    saved.refresh_from_db()
    assert saved.script == "print(3)"

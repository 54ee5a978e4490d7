"""The editor page and submitting runs from it (with and without HTMX)."""

import json

import pytest
from django.urls import reverse

from executions import runtimes
from executions.examples import VERSION_DEMO
from executions.models import ANONYMOUS_RUNS, Execution, SavedScript
from tests.conftest import run_of

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def test_it_shows_the_editor_to_anyone(client):
    response = client.get(reverse("editor"))
    html = response.content.decode()
    assert response.status_code == 200
    assert '<textarea name="script"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'hx-headers=\'{"X-CSRFToken"' in html
    for version in runtimes.versions():
        assert f'<option value="{version}"' in html
    assert "Limits in force" in html and "128 MiB" in html
    assert "?example=version-demo" in html
    assert "codemirror.bundle.js" in html
    assert "Log in" in html


def test_it_shows_who_is_signed_in(client, alice):
    client.force_login(alice)
    html = client.get(reverse("editor")).content.decode()
    assert "Signed in as <strong>alice</strong>" in html
    assert "Save script" in html


def test_it_refuses_post_on_the_editor_and_get_on_run(client):
    assert client.post(reverse("editor")).status_code == 405
    assert client.get(reverse("run")).status_code == 405


def test_it_prefills_an_example(client):
    response = client.get(reverse("editor"), {"example": "version-demo"})
    html = response.content.decode()
    assert "case int() if data &gt; 10:" in html
    assert '<option value="3.12" selected>' in html or "3.12" not in runtimes.versions()
    assert client.get(reverse("editor"), {"example": "nope"}).status_code == 404


def test_example_endpoint_returns_the_script(client):
    data = client.get(reverse("example", args=["version-demo"])).json()
    assert data["script"] == VERSION_DEMO
    assert data["python_version"] == "3.12"
    assert client.get(reverse("example", args=["nope"])).status_code == 404


def test_it_opens_an_anonymous_run_in_the_editor(client):
    run = run_of(script="print('from a run')", stdin="abc")
    html = client.get(reverse("editor"), {"from": str(run.execution_id)}).content.decode()
    assert "print(&#x27;from a run&#x27;)" in html
    assert ">\nabc</textarea>" in html


def test_it_opens_only_own_signed_in_runs(client, alice, bob):
    run = run_of(owner=alice, script="print('secret')")
    url = reverse("editor")
    assert client.get(url, {"from": str(run.execution_id)}).status_code == 404
    client.force_login(bob)
    assert client.get(url, {"from": str(run.execution_id)}).status_code == 404
    assert client.get(url, {"from": "not-a-uuid"}).status_code == 404
    client.force_login(alice)
    assert "secret" in client.get(url, {"from": str(run.execution_id)}).content.decode()


def test_it_opens_a_saved_script_for_its_owner_only(client, alice, bob):
    saved = SavedScript.objects.create(owner=alice, name="Mine", script="print('mine')")
    url = reverse("editor")
    assert client.get(url, {"script": str(saved.script_id)}).status_code == 404
    client.force_login(bob)
    assert client.get(url, {"script": str(saved.script_id)}).status_code == 404
    client.force_login(alice)
    html = client.get(url, {"script": str(saved.script_id)}).content.decode()
    assert "print(&#x27;mine&#x27;)" in html
    assert 'value="Mine"' in html


def test_run_without_js_redirects_to_the_execution_page(client):
    response = client.post(reverse("run"), {"script": "print(1)", "python_version": "3.12"})
    run = Execution.objects.get()
    assert response.status_code == 302
    assert response["Location"] == run.get_absolute_url()
    assert run.status == "queued" and run.python_version == "3.12"


def test_an_anonymous_run_belongs_to_the_browser_session(client):
    client.post(reverse("run"), {"script": "print(1)"})
    run = Execution.objects.get()
    assert run.owner is None
    assert client.session.session_key  # the session was made, and its token names the run
    assert run.session_key and run.session_key == client.session[ANONYMOUS_RUNS]
    assert run.python_version == runtimes.default_version()
    assert run.client_ip == "127.0.0.1"
    assert client.get(reverse("history")).content.decode().count(str(run.execution_id)) >= 1


def test_a_new_anonymous_callers_session_is_written_once(client):
    # The session's INSERT alone (no "is this key taken?" first: integr8s.sessions); then
    # the run's own queries: no second write of the session for the token.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as seen:
        client.post(reverse("run"), {"script": "print(1)"})
    writes = [q["sql"] for q in seen.captured_queries if "django_session" in q["sql"]]
    assert [w.split()[0] for w in writes] == ["INSERT"], writes


def test_a_signed_in_run_belongs_to_the_user(client, alice):
    client.force_login(alice)
    client.post(reverse("run"), {"script": "print(1)"})
    assert Execution.objects.get().owner == alice


def test_run_with_htmx_returns_the_result_partial(client):
    response = client.post(reverse("run"), {"script": "print(1)"}, **HTMX)
    run = Execution.objects.get()
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert 'id="result"' in html
    assert f'hx-get="{run.get_absolute_url()}"' in html
    assert 'hx-trigger="load delay:1000ms"' in html  # queued: its start is all that changes
    assert 'hx-swap-oob="true"' in html  # clears old errors next to the editor
    trigger = json.loads(response["HX-Trigger"])
    assert trigger == {"execution-submitted": {"execution_id": str(run.execution_id)}}


@pytest.mark.parametrize(
    "data, field, message",
    [
        ({"script": "   "}, "script", "The script is empty"),
        ({"script": "x" * (65 * 1024)}, "script", "the limit is 64 KiB"),
        ({"script": "print(1)", "python_version": "2.0"}, "python_version", "is not available"),
        ({"script": "print(1)", "stdin": "y" * (65 * 1024)}, "stdin", "the limit is 64 KiB"),
    ],
)
def test_bad_input_shows_a_message_next_to_the_editor(client, data, field, message):
    response = client.post(reverse("run"), data)
    html = response.content.decode()
    assert response.status_code == 400
    assert "<textarea" in html  # the whole page again, with what was typed
    assert f'data-field="{field}"' in html and message in html

    response = client.post(reverse("run"), data, **HTMX)
    html = response.content.decode()
    assert response.status_code == 400
    assert response["HX-Retarget"] == "#form-errors"
    assert response["HX-Reswap"] == "outerHTML"
    assert html.strip().startswith('<div id="form-errors"')
    assert message in html
    assert not Execution.objects.exists()


def test_a_rate_limit_is_a_friendly_message(client, settings):
    settings.THROTTLE_ANON = "1/min"
    assert client.post(reverse("run"), {"script": "print(1)"}).status_code == 302
    response = client.post(reverse("run"), {"script": "print(2)"}, **HTMX)
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert "Too many runs" in response.content.decode()
    response = client.post(reverse("run"), {"script": "print(2)"})
    assert response.status_code == 429
    assert "Too many runs" in response.content.decode()
    assert "<textarea" in response.content.decode()
    assert Execution.objects.count() == 1


def test_script_output_never_renders_as_markup(client):
    run = run_of(
        status="completed",
        exit_code=0,
        output="<script>alert(1)</script><img src=x onerror=alert(2)>",
        errors="<b>bold</b>",
    )
    response = client.get(reverse("editor"), {"from": str(run.execution_id)})
    assert response.status_code == 200
    html = client.get(run.get_absolute_url()).content.decode()
    assert "<script>alert(1)" not in html and "<img src=x" not in html and "<b>bold" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html


def test_pages_send_a_strict_csp_and_no_inline_script_or_style(client):
    response = client.get(reverse("editor"))
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert response["X-Frame-Options"] == "DENY"
    html = response.content.decode()
    assert "style=" not in html
    assert "<style" not in html
    assert "<script>" not in html  # every script has a src
    assert '"includeIndicatorStyles":false' in html


def test_opening_a_run_in_the_editor_shows_its_result(client):
    run = run_of(status="completed", exit_code=0, output="the old output")
    html = client.get(reverse("editor"), {"from": str(run.execution_id)}).content.decode()
    assert "the old output" in html
    assert 'id="result"' in html and "Run again" in html


@pytest.mark.django_db
def test_the_editor_shows_the_selected_runtimes_packages(client, monkeypatch):
    listed = {"3.12": [{"name": "numpy", "version": "2.1.3"}], "3.9": []}
    monkeypatch.setattr(runtimes, "packages", lambda version: listed.get(version, []))
    monkeypatch.setattr(runtimes, "versions", lambda *a: ["3.9", "3.12"])
    monkeypatch.setattr(runtimes, "default_version", lambda *a: "3.12")
    html = client.get("/").content.decode()
    assert "Packages for Python 3.12" in html and "numpy" in html and "2.1.3" in html
    other = client.get("/packages?python_version=3.9", headers={"HX-Request": "true"})
    assert other.status_code == 200
    text = other.content.decode()
    assert "Packages for Python 3.9" in text and "standard library only" in text
    assert "numpy" not in text and "<html" not in text
    assert client.post("/packages").status_code == 405

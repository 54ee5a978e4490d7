"""The execution page (live result partial), cancel, run again, and history."""

import json

import pytest
from django.urls import reverse

from executions.models import Execution
from tests.conftest import run_of

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def anonymous_run_in(client, **fields):
    """An anonymous run started by this client's browser session."""
    client.post(reverse("run"), {"script": "print('hi')"})
    run = Execution.objects.latest("created_at")
    Execution.objects.filter(pk=run.pk).update(**fields)
    run.refresh_from_db()
    return run


# --- execution page -------------------------------------------------------------------------


def test_anyone_with_the_link_opens_an_anonymous_run(client):
    run = run_of(status="completed", exit_code=0, output="hello out", wall_time_ms=42)
    response = client.get(run.get_absolute_url())
    html = response.content.decode()
    assert response.status_code == 200
    assert str(run.execution_id) in html
    assert "hello out" in html and "Completed" in html
    assert f"/?from={run.execution_id}" in html
    assert "Run again" in html
    assert "Cancel" not in html
    assert 'http-equiv="refresh"' not in html


def test_a_signed_in_run_is_for_its_owner_only(client, alice, bob):
    run = run_of(owner=alice)
    assert client.get(run.get_absolute_url()).status_code == 404
    client.force_login(bob)
    assert client.get(run.get_absolute_url()).status_code == 404
    assert client.post(reverse("execution-cancel", args=[run.execution_id])).status_code == 404
    assert client.post(reverse("execution-retry", args=[run.execution_id])).status_code == 404
    client.force_login(alice)
    assert client.get(run.get_absolute_url()).status_code == 200


def test_an_unknown_run_is_404(client):
    url = reverse("execution-detail", args=["00000000-0000-0000-0000-000000000000"])
    assert client.get(url).status_code == 404


def test_the_page_refuses_post(client):
    assert client.post(run_of().get_absolute_url()).status_code == 405


def test_a_running_run_polls_and_refreshes_without_js(client):
    run = run_of(status="running")
    html = client.get(run.get_absolute_url()).content.decode()
    assert '<noscript><meta http-equiv="refresh" content="1"></noscript>' in html
    assert 'hx-trigger="load delay:300ms"' in html
    assert "Running" in html


def test_a_queued_run_polls_less_often_than_a_running_one(client):
    run = run_of(status="queued")
    html = client.get(run.get_absolute_url()).content.decode()
    assert 'hx-trigger="load delay:1000ms"' in html


def test_htmx_polling_gets_only_the_partial_and_stops_when_done(client):
    run = run_of(status="running")
    html = client.get(run.get_absolute_url(), **HTMX).content.decode()
    assert html.strip().startswith('<section id="result"')
    assert "<html" not in html
    assert f'hx-get="{run.get_absolute_url()}"' in html

    Execution.objects.filter(pk=run.pk).update(status="completed", exit_code=0, output="done")
    html = client.get(run.get_absolute_url(), **HTMX).content.decode()
    assert "hx-get" not in html and "hx-trigger" not in html
    assert "done" in html


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"status": "failed", "error_type": "memory_limit"}, "used more than 128 MiB of memory"),
        ({"status": "timeout", "error_type": "timeout"}, "ran longer than the time limit (5 s"),
        ({"status": "failed", "error_type": "output_limit"}, "printed more than 1 MiB"),
        ({"status": "completed", "error_type": "script_error", "exit_code": 1}, "exit code 1"),
        ({"status": "failed", "error_type": "system_error"}, "could not run this script"),
        (
            {"status": "failed", "error_type": "system_error", "reason": "Pod unschedulable."},
            "Pod unschedulable.",
        ),
        (
            {
                "status": "cancelled",
                "error_type": "cancelled",
                "reason": "Cancelled by an operator.",
            },
            "Cancelled by an operator.",
        ),
    ],
)
def test_it_explains_how_a_run_ended(client, fields, words):
    run = run_of(**fields)
    assert words in client.get(run.get_absolute_url()).content.decode()


def test_it_uses_the_limits_the_run_was_held_to(client):
    run = run_of(
        status="failed",
        error_type="memory_limit",
        limits={"memory_bytes": 64 * 1024 * 1024},
        peak_memory_kb=65536,
        wall_time_ms=1500,
        cpu_time_ms=1200,
    )
    html = client.get(run.get_absolute_url()).content.decode()
    assert "used more than 64 MiB of memory" in html
    assert "64.0 MiB" in html and "of 64 MiB" in html
    assert "1.50 s" in html and "1.20 s" in html
    assert '<meter min="0" max="65536" value="65536"' in html


def test_it_says_when_output_was_cut(client):
    run = run_of(status="failed", error_type="output_limit", output="x" * 10, output_truncated=True)
    html = client.get(run.get_absolute_url()).content.decode()
    assert "Cut at the output limit" in html
    assert "The output was cut" in html


def test_stdout_and_stderr_are_separate_blocks(client):
    run = run_of(status="completed", exit_code=1, output="out!", errors="Traceback: err!")
    html = client.get(run.get_absolute_url()).content.decode()
    assert '<pre class="stream__body" data-stream="stdout">out!</pre>' in html
    assert '<pre class="stream__body" data-stream="stderr">Traceback: err!</pre>' in html
    assert "Exit 1" in html


# --- cancel ---------------------------------------------------------------------------------


def test_the_owner_cancels_a_queued_run(client, alice):
    run = run_of(owner=alice)
    client.force_login(alice)
    url = reverse("execution-cancel", args=[run.execution_id])
    assert client.get(url).status_code == 405
    response = client.post(url)
    assert response.status_code == 302 and response["Location"] == run.get_absolute_url()
    run.refresh_from_db()
    assert run.status == "cancelled"


def test_cancel_with_htmx_rerenders_the_result(client, alice):
    run = run_of(owner=alice, status="running")
    client.force_login(alice)
    response = client.post(reverse("execution-cancel", args=[run.execution_id]), **HTMX)
    html = response.content.decode()
    assert html.strip().startswith('<section id="result"')
    assert "Cancelling" in html
    assert "execution-cancelled" in response["HX-Trigger"]
    run.refresh_from_db()
    assert run.cancel_requested


def test_an_anonymous_run_is_cancelled_only_from_its_session(client, django_user_model):
    from django.test import Client

    run = anonymous_run_in(client)
    page = client.get(run.get_absolute_url()).content.decode()
    assert ">Cancel<" in page

    stranger = Client()
    assert ">Cancel<" not in stranger.get(run.get_absolute_url()).content.decode()
    url = reverse("execution-cancel", args=[run.execution_id])
    assert stranger.post(url).status_code == 404
    assert client.post(url).status_code == 302
    run.refresh_from_db()
    assert run.status == "cancelled"


# --- run again ------------------------------------------------------------------------------


def test_run_again_makes_a_new_run_for_the_caller(client, alice):
    old = run_of(status="completed", exit_code=0, script="print(7)", stdin="in")
    client.force_login(alice)
    response = client.post(reverse("execution-retry", args=[old.execution_id]))
    new = Execution.objects.exclude(pk=old.pk).get()
    assert response.status_code == 302 and response["Location"] == new.get_absolute_url()
    assert (new.script, new.stdin, new.python_version) == ("print(7)", "in", "3.12")
    assert new.retry_of == old and new.owner == alice and new.status == "queued"
    assert client.get(reverse("execution-retry", args=[old.execution_id])).status_code == 405


def test_run_again_with_htmx_swaps_the_result_and_moves_the_address(client):
    old = run_of(status="completed", exit_code=0)
    response = client.post(
        reverse("execution-retry", args=[old.execution_id]),
        HTTP_HX_CURRENT_URL=f"http://testserver{old.get_absolute_url()}",
        **HTMX,
    )
    new = Execution.objects.exclude(pk=old.pk).get()
    assert response.content.decode().strip().startswith('<section id="result"')
    assert response["HX-Push-Url"] == new.get_absolute_url()
    assert json.loads(response["HX-Trigger"])["execution-submitted"]["execution_id"] == str(
        new.execution_id
    )
    # From the editor the address stays.
    response = client.post(
        reverse("execution-retry", args=[old.execution_id]),
        HTTP_HX_CURRENT_URL="http://testserver/",
        **HTMX,
    )
    assert "HX-Push-Url" not in response


def test_run_again_refuses_a_version_no_longer_available(client):
    old = run_of(status="completed", python_version="2.0")
    response = client.post(reverse("execution-retry", args=[old.execution_id]), **HTMX)
    assert response.status_code == 400
    assert "is not available" in response.content.decode()
    assert Execution.objects.count() == 1


def test_run_again_is_rate_limited(client, settings):
    settings.THROTTLE_ANON = "1/min"
    old = run_of(status="completed")
    url = reverse("execution-retry", args=[old.execution_id])
    assert client.post(url).status_code == 302
    response = client.post(url)
    assert response.status_code == 429
    assert "Too many runs" in response.content.decode()
    assert Execution.objects.count() == 2


# --- history --------------------------------------------------------------------------------


def test_anonymous_history_shows_this_browsers_runs_only(client):
    from django.test import Client

    assert "No runs yet" in client.get(reverse("history")).content.decode()
    mine = anonymous_run_in(client)
    theirs = run_of(session_key="someone-else")
    html = client.get(reverse("history")).content.decode()
    assert mine.get_absolute_url() in html
    assert theirs.get_absolute_url() not in html
    assert mine.get_absolute_url() not in Client().get(reverse("history")).content.decode()


def test_signed_in_history_is_the_users_own(client, alice, bob):
    mine = run_of(owner=alice)
    theirs = run_of(owner=bob)
    anonymous = run_of()
    client.force_login(alice)
    html = client.get(reverse("history")).content.decode()
    assert mine.get_absolute_url() in html
    assert theirs.get_absolute_url() not in html
    assert anonymous.get_absolute_url() not in html


def test_history_filters_by_status_and_version(client, alice):
    done = run_of(owner=alice, status="completed", python_version="3.12")
    old = run_of(owner=alice, status="completed", python_version="3.9")
    queued = run_of(owner=alice)
    client.force_login(alice)
    html = client.get(reverse("history"), {"status": "completed"}).content.decode()
    assert done.get_absolute_url() in html and old.get_absolute_url() in html
    assert queued.get_absolute_url() not in html
    html = client.get(
        reverse("history"), {"status": "completed", "version": "3.9"}
    ).content.decode()
    assert old.get_absolute_url() in html and done.get_absolute_url() not in html


def test_history_rejects_an_unknown_status(client, alice):
    client.force_login(alice)
    response = client.get(reverse("history"), {"status": "exploded"})
    assert response.status_code == 400
    assert "Status:" in response.content.decode()


def test_history_paginates_and_serves_a_partial_to_htmx(client, alice):
    for _ in range(25):
        run_of(owner=alice)
    client.force_login(alice)
    html = client.get(reverse("history")).content.decode()
    assert "Page 1 of 2" in html and "page=2" in html
    response = client.get(reverse("history"), {"page": 2}, **HTMX)
    html = response.content.decode()
    assert html.strip().startswith('<div id="history-list"')
    assert "<html" not in html
    assert html.count("<tr>") == 1 + 5
    assert client.post(reverse("history")).status_code == 405

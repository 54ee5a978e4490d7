"""Page paths the other view tests leave out: typing into an interactive run (with and
without HTMX), a shared run's page, and a client's malformed HX-Current-URL."""

import json

import pytest

from executions.limits import Limits
from executions.models import Execution, InputLine, OutputChunk

from .conftest import run_of as bare_run_of

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def run_of(owner=None, **fields):
    fields.setdefault("limits", Limits().to_dict())
    return bare_run_of(owner, **fields)


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


def input_url(run):
    return f"/executions/{run.execution_id}/input"


# --- typing into a run -------------------------------------------------------------------------


def test_a_typed_line_is_stored_with_its_newline(alice, alice_client):
    run = run_of(alice, status="running", interactive=True)
    r = alice_client.post(input_url(run), {"text": "Ada"})
    assert r.status_code == 302
    assert r["Location"] == run.get_absolute_url()
    assert list(InputLine.objects.values_list("text", "eof")) == [("Ada\n", False)]


def test_a_typed_line_with_htmx_rerenders_the_live_part(alice, alice_client):
    run = run_of(alice, status="running", interactive=True)
    OutputChunk.objects.create(execution=run, seq=1, stream="stdout", text="Name? ")
    r = alice_client.post(input_url(run), {"text": "Grace"}, **HTMX)
    assert r.status_code == 200
    body = r.content.decode()
    assert "Name? " in body
    assert "Grace" in body  # the live console shows the typed input among the output
    assert InputLine.objects.get().text == "Grace\n"


def test_the_end_of_input_with_htmx_rerenders_the_whole_result(alice, alice_client):
    run = run_of(alice, status="running", interactive=True)
    r = alice_client.post(input_url(run), {"eof": "on"}, **HTMX)
    assert r.status_code == 200
    assert r["HX-Retarget"] == "#result"
    assert r["HX-Reswap"] == "outerHTML"
    line = InputLine.objects.get()
    assert line.eof and line.text == ""


def test_input_after_the_end_of_input_is_refused(alice, alice_client):
    run = run_of(alice, status="running", interactive=True)
    InputLine.objects.create(execution=run, eof=True)
    r = alice_client.post(input_url(run), {"text": "late"}, **HTMX)
    assert r.status_code == 409
    assert "input has ended" in r.content.decode()
    assert InputLine.objects.count() == 1


def test_input_to_an_ended_run_is_refused_with_a_message(alice, alice_client):
    run = run_of(alice, status="completed", interactive=True)
    r = alice_client.post(input_url(run), {"text": "late"}, follow=True)
    assert r.redirect_chain[-1][0] == run.get_absolute_url()
    assert "This run has ended, so it takes no more input." in r.content.decode()
    assert not InputLine.objects.exists()


def test_input_to_a_run_not_interactive_is_refused(alice, alice_client):
    run = run_of(alice, status="running")
    r = alice_client.post(input_url(run), {"text": "x"}, **HTMX)
    assert r.status_code == 409
    assert "not started as interactive" in r.content.decode()
    assert not InputLine.objects.exists()


def test_empty_input_with_htmx_answers_the_form_with_its_error(alice, alice_client):
    run = run_of(alice, status="running", interactive=True)
    r = alice_client.post(input_url(run), {}, **HTMX)
    assert r.status_code == 400
    assert r["HX-Retarget"] == "#input"
    assert "Send a line of text, or the end of input." in r.content.decode()
    assert not InputLine.objects.exists()


def test_input_past_the_cap_without_htmx_shows_the_page_with_the_error(
    alice, alice_client, settings
):
    run = run_of(alice, status="running", interactive=True)
    cap = Limits().stdin_bytes
    InputLine.objects.create(execution=run, text="x" * (cap - 1))
    r = alice_client.post(input_url(run), {"text": "yy"})
    assert r.status_code == 400
    assert "the limit is" in r.content.decode()
    assert InputLine.objects.count() == 1


def test_input_to_someone_elses_run_is_not_found(alice, bob, client):
    run = run_of(alice, status="running", interactive=True)
    client.force_login(bob)
    r = client.post(input_url(run), {"text": "x"})
    assert r.status_code == 404
    assert not InputLine.objects.exists()


# --- shared runs -------------------------------------------------------------------------------


def test_a_shared_run_is_readable_by_anyone_with_the_link(alice, client):
    run = run_of(alice, status="completed", output="shared output\n", exit_code=0)
    run.share()
    r = client.get(run.get_share_url())
    assert r.status_code == 200
    body = r.content.decode()
    assert "shared output" in body
    assert f"/executions/{run.execution_id}/cancel" not in body  # read-only


def test_an_unknown_share_token_is_not_found(client):
    assert client.get("/shared/runs/no-such-token/").status_code == 404


# --- HX-Current-URL ----------------------------------------------------------------------------


def test_a_malformed_current_url_does_not_break_run_again(alice, alice_client):
    run = run_of(alice, status="completed")
    r = alice_client.post(
        f"/executions/{run.execution_id}/retry", **HTMX, HTTP_HX_CURRENT_URL="http://["
    )
    assert r.status_code == 200
    assert "HX-Push-Url" not in r  # no page path to follow
    new = Execution.objects.exclude(pk=run.pk).get()
    assert new.retry_of == run
    trigger = json.loads(r["HX-Trigger"])
    assert trigger["execution-submitted"]["execution_id"] == str(new.execution_id)

"""The result panel while a run goes (output in order, elapsed time), input typed into an
interactive run, and errors in words (issue 12)."""

import time

import pytest
from django.urls import reverse
from django.utils import timezone

from executions.models import Execution, InputLine, OutputChunk
from executions.templatetags.executions import error_summary, neutral_paths
from executions.templatetags.terminal import render, terminal
from tests.conftest import run_of

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
LIVE = {**HTMX, "HTTP_HX_TARGET": "live"}


def own_run(client, **fields):
    """An anonymous run of this client's browser session."""
    client.post(reverse("run"), {"script": "print('hi')", "interactive": "on"})
    run = Execution.objects.latest("created_at")
    fields.setdefault("status", "running")
    fields.setdefault("started_at", timezone.now())
    Execution.objects.filter(pk=run.pk).update(**fields)
    run.refresh_from_db()
    return run


def chunk(run, seq, stream, text):
    return OutputChunk.objects.create(execution=run, seq=seq, stream=stream, text=text)


# --- live output --------------------------------------------------------------------------


def test_the_editor_submits_interactive_runs(client):
    client.post(reverse("run"), {"script": "input()", "interactive": "on"})
    assert Execution.objects.get().interactive
    client.post(reverse("run"), {"script": "input()"})
    assert not Execution.objects.latest("created_at").interactive


def test_a_running_run_shows_its_output_in_the_order_printed(client):
    run = own_run(client)
    chunk(run, 1, "stdout", "one\n")
    chunk(run, 2, "stderr", "two\n")
    chunk(run, 3, "stdout", "three\n")
    html = client.get(run.get_absolute_url(), **LIVE).content.decode()
    assert html.strip().startswith('<div id="live"')
    assert 'data-stream="console">one\n<span class="t-stderr">two</span>\nthree\n' in html
    assert 'data-testid="elapsed"' in html
    assert f'hx-get="{run.get_absolute_url()}"' in html


def test_a_live_poll_asks_only_what_the_live_part_shows(client):
    """A running run's page polls its live part a few times a second: who may control or
    share it, and whether its input is open, are the full panel's questions (a query each)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    run = own_run(client)
    with CaptureQueriesContext(connection) as poll:
        assert client.get(run.get_absolute_url(), **LIVE).status_code == 200
    with CaptureQueriesContext(connection) as page:
        html = client.get(run.get_absolute_url()).content.decode()
    assert 'id="id_input_text"' in html and "Cancel" in html  # the full panel still asks
    asked = ['SELECT 1 AS "a"' in q["sql"] for q in poll.captured_queries]
    assert not any(asked), [q["sql"] for q in poll.captured_queries]
    assert len(poll.captured_queries) < len(page.captured_queries)


def test_the_live_poll_gets_the_whole_panel_once_the_run_ended(client):
    run = own_run(client, status="completed", exit_code=0, output="done\n")
    response = client.get(run.get_absolute_url(), **LIVE)
    html = response.content.decode()
    assert response["HX-Retarget"] == "#result" and response["HX-Reswap"] == "outerHTML"
    assert html.strip().startswith('<section id="result"')
    assert 'data-stream="stdout">done\n</pre>' in html
    assert "hx-get" not in html
    assert 'id="result-announcer" hx-swap-oob="innerHTML">The run ended: Completed.' in html


def test_typed_input_is_echoed_between_the_output(client):
    run = own_run(client)
    chunk(run, 1, "stdout", "Name? ")
    InputLine.objects.create(execution=run, text="Ada\n")
    html = client.get(run.get_absolute_url(), **LIVE).content.decode()
    assert 'Name? <span class="t-input">Ada</span>' in html


def test_ansi_colours_and_carriage_returns_render_as_a_terminal_would():
    assert (
        terminal("\x1b[31mred\x1b[0m plain") == '<span class="t-stdout t-fg-red">red</span> plain'
    )
    assert terminal("10%\r50%\r100%\ndone") == "100%\ndone"
    assert terminal("abcdef\rXY") == "XYcdef"
    assert terminal("progress 9\r\x1b[Kok") == "ok"
    assert terminal("<b>&") == "&lt;b&gt;&amp;"
    assert render([("stdout", "a"), ("stderr", "b")]) == 'a<span class="t-stderr">b</span>'


def test_rewriting_a_long_line_costs_what_is_written_not_the_line():
    # Output within the 1 MiB cap: a 10,000-character line, then "\ra" many times over. Each
    # rewrite cost the whole line (about 5 ms): the cap's worth pinned a web thread for
    # minutes on every look at the page, and its poll asked again every 300 ms.
    started = time.perf_counter()
    assert terminal("x" * 10_000 + "\ra" * 20_000) == "a" + "x" * 9_999
    interleaved = render([("stdout", "a"), ("stderr", "b")] * 20_000)
    assert time.perf_counter() - started < 2
    assert interleaved.count('<span class="t-stderr">b</span>') == 20_000
    # What a rewrite left keeps its styles.
    assert terminal("\x1b[31mabc\x1b[0m\rX") == 'X<span class="t-stdout t-fg-red">bc</span>'
    assert terminal("abcdef\r\x1b[1mXY\x1b[0m\nnext") == (
        '<span class="t-stdout t-bold">XY</span>cdef\nnext'
    )


# --- errors in words ----------------------------------------------------------------------

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/scripts/script.py", line 3, in <module>\n'
    "    print(x)\n"
    "          ^\n"
    "NameError: name 'x' is not defined\n"
)


def test_the_exception_and_line_are_named_above_the_traceback(client):
    run = run_of(status="completed", exit_code=1, errors=TRACEBACK, error_type="script_error")
    assert error_summary(run) == {
        "headline": "NameError at line 3: name 'x' is not defined",
        "hint": "",
    }
    html = client.get(run.get_absolute_url()).content.decode()
    assert "NameError at line 3: name &#x27;x&#x27; is not defined" in html


def test_the_headline_names_the_exception_that_ended_the_run():
    # Not the one it was handling, and whatever its class is called.
    chained = (
        "Traceback (most recent call last):\n"
        '  File "/scripts/script.py", line 5, in <module>\n'
        '    {}["x"]\n'
        "KeyError: 'x'\n\n"
        "During handling of the above exception, another exception occurred:\n\n"
        "Traceback (most recent call last):\n"
        '  File "/scripts/script.py", line 7, in <module>\n'
        '    raise Boom("it went wrong")\n'
        "Boom: it went wrong\n"
    )
    run = run_of(status="completed", exit_code=1, errors=chained, error_type="script_error")
    assert error_summary(run)["headline"] == "Boom at line 7: it went wrong"
    stop = TRACEBACK.replace("NameError: name 'x' is not defined", "StopIteration")
    run = run_of(status="completed", exit_code=1, errors=stop, error_type="script_error")
    assert error_summary(run)["headline"] == "StopIteration at line 3"
    # A syntax error has no "Traceback" line; a note follows its exception.
    syntax = (
        '  File "/scripts/script.py", line 2\n    x = \n        ^\nSyntaxError: invalid syntax\n'
    )
    run = run_of(status="completed", exit_code=1, errors=syntax, error_type="script_error")
    assert error_summary(run)["headline"] == "SyntaxError at line 2: invalid syntax"
    noted = TRACEBACK + "Did you mean: 'y'?\n"
    run = run_of(status="completed", exit_code=1, errors=noted, error_type="script_error")
    assert error_summary(run)["headline"] == "NameError at line 3: name 'x' is not defined"
    # Something the script printed to stderr after its own traceback is no exception.
    run = run_of(status="completed", exit_code=1, errors="bye\nfailed: see above\n")
    assert error_summary(run) is None


def test_eof_from_input_says_how_to_give_input():
    errors = (
        "Traceback (most recent call last):\n"
        '  File "/scripts/script.py", line 1, in <module>\n'
        "EOFError: EOF when reading a line\n"
    )
    summary = error_summary(run_of(status="completed", exit_code=1, errors=errors))
    assert summary["headline"] == "EOFError at line 1: EOF when reading a line"
    assert "Interactive" in summary["hint"] and "Input (stdin)" in summary["hint"]


def test_tracebacks_show_neutral_paths():
    host = '  File "/root/.pyenv/versions/3.12.1/lib/python3.12/json/__init__.py", line 3'
    assert neutral_paths(host) == '  File "/usr/lib/python3.12/json/__init__.py", line 3'


def test_a_traceback_printed_while_it_runs_shows_neutral_paths_too(client):
    # traceback.print_exc() in a script that goes on: the live console, not only the result.
    # The worker's batches may cut a path in two.
    run = own_run(client)
    chunk(run, 1, "stderr", '  File "/root/.pyenv/versions/3.12.1/li')
    chunk(run, 2, "stderr", 'b/python3.12/json/decoder.py", line 3\n')
    chunk(run, 3, "stdout", "still going\n")
    html = client.get(run.get_absolute_url(), **LIVE).content.decode()
    assert "/root/.pyenv" not in html
    assert "File &quot;/usr/lib/python3.12/json/decoder.py&quot;, line 3" in html
    assert "still going" in html


# --- input --------------------------------------------------------------------------------


def input_url(run):
    return reverse("execution-input", args=[run.execution_id])


def test_a_line_typed_in_goes_to_the_run(client):
    run = own_run(client)
    response = client.post(input_url(run), {"text": "Ada"}, **HTMX)
    assert response.status_code == 200
    assert response.content.decode().strip().startswith('<div id="live"')
    line = InputLine.objects.get(execution=run)
    assert (line.text, line.eof) == ("Ada\n", False)


def test_end_of_input_is_sent_and_the_input_line_goes(client):
    run = own_run(client)
    response = client.post(input_url(run), {"eof": "on"}, **HTMX)
    assert response.status_code == 200 and response["HX-Retarget"] == "#result"
    assert InputLine.objects.get(execution=run).eof
    assert 'id="input"' not in response.content.decode()
    assert client.post(input_url(run), {"text": "late"}, **HTMX).status_code == 409


def test_without_javascript_input_posts_and_comes_back(client):
    run = own_run(client)
    response = client.post(input_url(run), {"text": "Ada"})
    assert response.status_code == 302 and response["Location"] == run.get_absolute_url()
    assert 'id="input"' in client.get(run.get_absolute_url()).content.decode()


def test_input_after_the_end_is_refused(client):
    run = own_run(client, status="completed", exit_code=0)
    response = client.post(input_url(run), {"text": "Ada"}, **HTMX)
    assert response.status_code == 409
    assert "This run has ended, so it takes no more input." in response.content.decode()
    response = client.post(input_url(run), {"text": "Ada"}, follow=True)
    assert "This run has ended" in response.content.decode()
    assert not InputLine.objects.exists()


def test_a_run_that_is_not_interactive_takes_no_input(client):
    run = own_run(client, interactive=False)
    assert client.post(input_url(run), {"text": "x"}, **HTMX).status_code == 409


def test_input_is_the_owners_only(client, alice, bob):
    run = run_of(owner=alice, status="running", interactive=True)
    assert client.post(input_url(run), {"text": "x"}).status_code == 404  # anonymous
    client.force_login(bob)
    assert client.post(input_url(run), {"text": "x"}).status_code == 404
    anonymous_elsewhere = run_of(status="running", interactive=True, session_key="other")
    assert client.post(input_url(anonymous_elsewhere), {"text": "x"}).status_code == 404
    client.force_login(alice)
    assert client.post(input_url(run), {"text": "x"}).status_code == 302
    assert InputLine.objects.count() == 1


def test_input_wants_post(client):
    run = own_run(client)
    assert client.get(input_url(run)).status_code == 405


def test_bad_input_names_the_field(client, settings):
    settings.LIMITS = {**settings.LIMITS, "stdin_kb": 1}
    run = own_run(client)
    response = client.post(input_url(run), {}, **HTMX)
    assert response.status_code == 400 and 'data-field="text"' in response.content.decode()
    response = client.post(input_url(run), {"text": "x" * 2000}, **HTMX)
    assert response.status_code == 400
    assert "the limit is 1 KiB" in response.content.decode()
    assert response["HX-Retarget"] == "#input"
    assert not InputLine.objects.exists()


def test_typed_input_and_the_stdin_given_before_share_one_cap(client, settings):
    # As the API counts it (POST /api/v1/executions/<id>/input): stdin included.
    settings.LIMITS = {**settings.LIMITS, "stdin_kb": 1}
    run = own_run(client, stdin="x" * 900)
    response = client.post(input_url(run), {"text": "y" * 200}, **HTMX)
    assert response.status_code == 400 and "the limit is 1 KiB" in response.content.decode()
    assert client.post(input_url(run), {"text": "y" * 100}, **HTMX).status_code == 200


def test_a_new_run_clears_what_was_announced_of_the_last(client):
    # Otherwise a second run ending as the first did writes the same words into the live
    # region, and a screen reader may not announce them again.
    clear = '<p id="result-announcer" hx-swap-oob="innerHTML"></p>'
    assert clear in client.post(reverse("run"), {"script": "print(1)"}, **HTMX).content.decode()
    ended = own_run(client, status="completed", exit_code=0)
    retried = client.post(reverse("execution-retry", args=[ended.execution_id]), **HTMX)
    assert retried.status_code == 200 and clear in retried.content.decode()

"""Live output and input through the API: the events stream and POST .../input."""

import json
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from rest_framework.test import APIClient

from executions.models import Execution, InputLine, OutputChunk, Status

EXECUTE = "/api/v1/execute"


def make(script="x", status=Status.RUNNING, **fields):
    """An execution as submitted, then moved to status (as a worker would)."""
    execution = Execution.objects.submit(
        script, "", **{k: v for k, v in fields.items() if k in ("owner", "interactive")}
    )
    changes = {k: v for k, v in fields.items() if k not in ("owner", "interactive")}
    if "limits" in changes:
        changes["limits"] = {**execution.limits, **changes["limits"]}
    Execution.objects.filter(pk=execution.pk).update(status=status, worker="w", **changes)
    execution.refresh_from_db()
    return execution


def events(client, execution, last_event_id=None, **extra):
    headers = {"HTTP_LAST_EVENT_ID": str(last_event_id)} if last_event_id is not None else {}
    response = client.get(f"/api/v1/executions/{execution.execution_id}/events", **headers)
    return response


def parse(response) -> list[tuple[str | None, str, dict]]:
    """(id, event, data) of each server-sent event in a finished stream."""

    async def collect(stream):
        return [part async for part in stream]

    body = b"".join(async_to_sync(collect)(response.streaming_content)).decode()
    found = []
    for block in body.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if "event" in fields:
            found.append((fields.get("id"), fields["event"], json.loads(fields["data"])))
    return found


@pytest.mark.django_db
def test_a_stream_opened_after_the_end_answers_at_once(client):
    execution = make("print(1)", Status.COMPLETED, output="1\n")
    response = events(client, execution)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-store"
    got = parse(response)
    assert [event for _, event, _ in got] == ["status", "end"]
    assert got[-1][2]["output"] == "1\n" and got[-1][2]["status"] == "completed"


@pytest.mark.django_db(transaction=True)
def test_a_stream_resumes_after_the_last_event_it_saw():
    execution = make()
    for seq, (stream, text) in enumerate([("stdout", "a"), ("stderr", "b"), ("stdout", "c")], 1):
        OutputChunk.objects.create(execution=execution, seq=seq, stream=stream, text=text)

    def end_soon():
        time.sleep(0.5)
        Execution.objects.filter(pk=execution.pk).update(status=Status.COMPLETED, output="ac")

    ender = threading.Thread(target=end_soon)
    ender.start()
    try:
        got = parse(events(APIClient(), execution, last_event_id=1))
    finally:
        ender.join()
    outputs = [(i, data) for i, event, data in got if event == "output"]
    assert outputs == [
        ("2", {"stream": "stderr", "text": "b", "seq": 2}),
        ("3", {"stream": "stdout", "text": "c", "seq": 3}),
    ]
    assert (
        got[0][1:] == ("status", {"status": "running", "awaiting_input": False})
        and got[-1][1] == "end"
    )


@pytest.mark.django_db
def test_another_user_s_stream_is_a_404_and_a_bad_id_too(alice, bob_api):
    execution = make(owner=alice)
    assert events(bob_api, execution).status_code == 404
    assert bob_api.get("/api/v1/executions/nope/events").status_code == 404
    assert bob_api.post(f"/api/v1/executions/{execution.execution_id}/events").status_code == 405
    bad = bob_api.get(f"/api/v1/executions/{execution.execution_id}/events", HTTP_LAST_EVENT_ID="x")
    assert bad.status_code == 404  # not visible: the id is checked first


@pytest.mark.django_db
def test_a_caller_holds_as_many_streams_as_waits_and_gets_them_back(client, settings):
    settings.MAX_ACTIVE_PER_CALLER = 2
    running = make("print(1)")
    open_streams = [events(client, running), events(client, running)]
    assert all(r.status_code == 200 for r in open_streams)
    refused = events(client, running)
    assert refused.status_code == 429 and refused["Retry-After"]
    assert "requests waiting" in refused.json()["detail"]
    Execution.objects.filter(pk=running.pk).update(status=Status.COMPLETED)
    parse(open_streams[0])  # read to its end: its slot goes back
    assert events(client, running).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_output_arrives_while_it_runs_then_the_end(worker):
    client = APIClient()
    script = "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.3)"
    r = client.post(EXECUTE, {"script": script}, format="json")
    execution = Execution.objects.get(execution_id=r.json()["execution_id"])
    got = parse(events(client, execution))
    printed = "".join(data["text"] for _, event, data in got if event == "output")
    assert printed == "0\n1\n2\n"
    assert got[-1][1] == "end" and got[-1][2]["output"] == "0\n1\n2\n"
    assert ("status", {"status": "running", "awaiting_input": False}) in [(e, d) for _, e, d in got]


def post_input(client, execution, **body):
    return client.post(f"/api/v1/executions/{execution.execution_id}/input", body, format="json")


@pytest.mark.django_db
def test_input_goes_to_a_running_interactive_run_of_its_owner(alice, alice_api, bob_api):
    execution = make("input()", owner=alice, interactive=True)
    assert post_input(alice_api, execution, text="Ada\n").status_code == 202
    assert post_input(alice_api, execution, eof=True).status_code == 202
    assert [(i.text, i.eof) for i in InputLine.objects.all()] == [("Ada\n", False), ("", True)]
    assert post_input(bob_api, execution, text="x").status_code == 404
    assert post_input(APIClient(), execution, text="x").status_code == 404
    bad = post_input(alice_api, execution, text=3)
    assert bad.status_code == 400 and "text" in bad.json()
    assert post_input(alice_api, execution).status_code == 400
    assert alice_api.get(f"/api/v1/executions/{execution.execution_id}/input").status_code == 405


@pytest.mark.django_db
def test_input_is_capped_like_stdin(alice, alice_api, settings):
    execution = make("input()", owner=alice, interactive=True, limits={"stdin_bytes": 10})
    assert post_input(alice_api, execution, text="0123456").status_code == 202
    assert post_input(alice_api, execution, text="0123").status_code == 413


@pytest.mark.django_db
def test_input_after_the_end_or_to_a_run_given_all_its_input_is_a_409(alice, alice_api):
    ended = make(owner=alice, interactive=True, status=Status.COMPLETED)
    plain = make(owner=alice)
    assert post_input(alice_api, ended, text="x").status_code == 409
    assert post_input(alice_api, plain, text="x").status_code == 409


@pytest.mark.django_db(transaction=True)
def test_an_interactive_round_trip_through_the_api(worker):
    client = APIClient()
    script = "name = input('name? ')\nprint('hello', name)"
    r = client.post(EXECUTE, {"script": script, "interactive": True}, format="json")
    assert r.status_code == 202, r.json()
    execution = Execution.objects.get(execution_id=r.json()["execution_id"])
    deadline = time.monotonic() + 20
    while "name? " not in client.get(f"/api/v1/result/{execution.execution_id}").json()["output"]:
        assert time.monotonic() < deadline, "no prompt while it ran"
        time.sleep(0.05)
    # An anonymous run's input is its browser session's: the API client kept the cookie.
    assert post_input(client, execution, text="Ada\n").status_code == 202
    got = parse(events(client, execution))
    assert got[-1][2]["output"] == "name? hello Ada\n"


@pytest.mark.django_db(transaction=True)
def test_a_run_says_when_its_script_waits_for_input(worker):
    """awaiting_input is true only while the script is blocked reading input nobody has sent
    yet: not while it computes first, not once it has its line, not after its end."""
    client = APIClient()
    script = (
        "import time\nprint('thinking', flush=True)\ntime.sleep(2)\n"
        "name = input('name? ')\ntime.sleep(1)\nprint('hello', name)"
    )
    r = client.post(EXECUTE, {"script": script, "interactive": True}, format="json")
    url = f"/api/v1/result/{r.json()['execution_id']}"

    def until(check, what):
        deadline = time.monotonic() + 20
        while not check(body := client.get(url).json()):
            assert time.monotonic() < deadline, what
            time.sleep(0.05)
        return body

    thinking = until(lambda b: "thinking" in b["output"], "no output while it ran")
    assert thinking["awaiting_input"] is False  # sleeping, not reading
    asked = until(lambda b: b["awaiting_input"], "never said it waits for input")
    assert asked["output"].endswith("name? ")  # the prompt is there when it asks
    assert (
        post_input(
            client, Execution.objects.get(execution_id=asked["execution_id"]), text="Ada\n"
        ).status_code
        == 202
    )
    answered = until(lambda b: not b["awaiting_input"], "still waiting after its input")
    assert answered["status"] == "running"  # it has its line and sleeps on
    execution = Execution.objects.get(execution_id=asked["execution_id"])
    got = parse(events(client, execution))
    assert got[-1][2]["output"] == "thinking\nname? hello Ada\n"
    assert got[-1][2]["awaiting_input"] is False


@pytest.mark.django_db
def test_interactive_runs_need_the_local_backend(settings):
    settings.EXECUTION_BACKEND = "kubernetes"
    r = APIClient().post(EXECUTE, {"script": "input()", "interactive": True}, format="json")
    assert r.status_code == 400 and "interactive" in r.json()


@pytest.mark.django_db
def test_past_a_full_queue_submissions_get_503_with_retry_after(settings, alice_api, client):
    settings.MAX_QUEUED = 2
    for _ in range(2):
        assert alice_api.post(EXECUTE, {"script": "1"}, format="json").status_code == 202
    refused = APIClient().post(EXECUTE, {"script": "1"}, format="json")
    assert refused.status_code == 503 and refused["Retry-After"] == "30"
    assert "busy" in refused.json()["detail"]
    page = client.post("/run", {"script": "print(1)", "python_version": "3.12"})
    assert page.status_code == 503 and page["Retry-After"] == "30"
    assert "busy" in page.content.decode()


@pytest.mark.django_db
def test_an_anonymous_run_takes_input_from_its_own_browser_only():
    mine, other = APIClient(), APIClient()
    r = mine.post(EXECUTE, {"script": "input()", "interactive": True}, format="json")
    execution = Execution.objects.get(execution_id=r.json()["execution_id"])
    Execution.objects.filter(pk=execution.pk).update(status=Status.RUNNING, worker="w")
    assert post_input(other, execution, text="x\n").status_code == 404
    assert post_input(mine, execution, text="Ada\n").status_code == 202
    assert [line.text for line in InputLine.objects.all()] == ["Ada\n"]


HOST_FRAME = '  File "/root/.pyenv/versions/3.12.1/lib/python3.12/json/decoder.py", line 3\n'
NEUTRAL_FRAME = '  File "/usr/lib/python3.12/json/decoder.py", line 3\n'


@pytest.mark.django_db
def test_tracebacks_read_with_neutral_paths_in_the_result_and_the_stream(client):
    """Not the host's interpreter prefix: the API shows what the page shows."""
    ended = make("import json", Status.COMPLETED, errors=HOST_FRAME)
    assert client.get(f"/api/v1/result/{ended.execution_id}").json()["errors"] == NEUTRAL_FRAME
    assert parse(events(client, ended))[-1][2]["errors"] == NEUTRAL_FRAME

    running = make("import json")
    OutputChunk.objects.create(execution=running, seq=1, stream="stderr", text=HOST_FRAME)
    OutputChunk.objects.create(execution=running, seq=2, stream="stdout", text=HOST_FRAME)
    assert client.get(f"/api/v1/result/{running.execution_id}").json()["errors"] == NEUTRAL_FRAME
    Execution.objects.filter(pk=running.pk).update(status=Status.COMPLETED)
    outputs = [
        data["text"] for _, event, data in parse(events(client, running)) if event == "output"
    ]
    assert outputs == [NEUTRAL_FRAME, HOST_FRAME]  # what the script printed to stdout is its own

"""The web server's ASGI application (integr8s/asgi.py): synchronous views in one thread of a
fixed pool, as under WSGI; views that wait on the event loop through Django's handler."""

import asyncio
import contextlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from integr8s import asgi

STATIC = Path(__file__).resolve().parent.parent / "static"


def scope_of(method: str, path: str, body: bytes, headers=(), query: bytes = b"", length=None):
    """An HTTP request's ASGI scope, as uvicorn gives it. length: the Content-Length sent (the
    body's own by default; False sends none)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"localhost"), *headers]
        + ([] if length is False else [(b"content-length", b"%d" % (length or len(body)))]),
        "client": ("127.0.0.1", 40000),
        "server": ("localhost", 80),
    }


def call(
    method: str,
    path: str,
    body: bytes = b"",
    headers=(),
    query: bytes = b"",
    length=None,
    app=None,
):
    """One request through the application (or app): (status, headers, body). length: the
    Content-Length sent (the body's own by default; False sends none)."""
    messages: list[dict] = []
    incoming = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if incoming:
            return incoming.pop()
        await asyncio.sleep(3600)  # the client stays; a disconnect is not this test's case

    async def send(message):
        messages.append(message)

    scope = scope_of(method, path, body, headers, query, length)
    asyncio.run((app or asgi.application)(scope, receive, send))
    start, *bodies = messages
    assert start["type"] == "http.response.start"
    assert bodies[-1].get("more_body", False) is False
    return (
        start["status"],
        {k.lower(): v for k, v in start["headers"]},
        b"".join(m.get("body", b"") for m in bodies),
    )


def test_views_that_wait_are_told_from_the_others():
    assert not asgi.waits("/api/v1/execute")  # served in the pool; a wait=true waits on the loop
    assert asgi.waits("/api/v1/executions/00000000-0000-4000-8000-000000000000/events")
    assert not asgi.waits("/healthz")
    assert not asgi.waits("/api/v1/result/00000000-0000-4000-8000-000000000000")
    assert not asgi.waits("/no/such/page")


@pytest.mark.django_db(transaction=True)
def test_a_synchronous_view_is_served_in_a_thread_of_the_pool(monkeypatch):
    seen = []
    respond = asgi.application.respond

    def spy(*args):
        seen.append(threading.current_thread().name)
        return respond(*args)

    monkeypatch.setattr(asgi.application, "respond", spy)
    code, headers, body = call("GET", "/healthz")
    assert code == 200 and json.loads(body)["status"] == "ok"
    assert seen and seen[0].startswith("web")
    assert headers[b"x-content-type-options"] == b"nosniff"  # the middleware chain ran


@pytest.mark.django_db(transaction=True)
def test_cookies_and_a_request_body_reach_and_leave_a_synchronous_view():
    code, headers, body = call("GET", "/accounts/login/")
    assert code == 200 and b"csrfmiddlewaretoken" in body
    assert headers[b"set-cookie"].startswith(b"csrftoken=")
    code, _, body = call(
        "POST",
        "/api/v1/auth/register",
        body=b'{"username": "x", ',
        headers=[(b"content-type", b"application/json")],
    )
    assert code == 400 and b"JSON parse error" in body


@pytest.mark.django_db(transaction=True)
def test_a_streaming_response_arrives_whole():
    code, headers, body = call("GET", "/static/css/site.css")
    assert code == 200
    assert body == (STATIC / "css" / "site.css").read_bytes()


@pytest.mark.django_db(transaction=True)
def test_a_big_static_file_goes_to_the_loop_in_few_hops(monkeypatch):
    """Each hop from the pool to the loop waits its turn on a busy loop: a 460 KiB bundle
    took eight (64 KiB each), p50 130 ms under load; now the start with the file, then the
    end."""
    hops = []
    real = asgi.asyncio.run_coroutine_threadsafe
    monkeypatch.setattr(
        asgi.asyncio, "run_coroutine_threadsafe", lambda *a: hops.append(1) or real(*a)
    )
    bundle = STATIC / "vendor" / "codemirror" / "codemirror.bundle.js"
    assert bundle.stat().st_size > 4 * 65536
    code, _, body = call("GET", "/static/vendor/codemirror/codemirror.bundle.js")
    assert code == 200 and body == bundle.read_bytes()
    assert len(hops) == 2


@pytest.mark.django_db(transaction=True)
def test_a_view_that_waits_is_served_by_djangos_handler(monkeypatch):
    served = []
    handle = asgi.ASGIHandler.handle

    async def spy(self, scope, receive, send):
        served.append(scope["path"])
        return await handle(self, scope, receive, send)

    monkeypatch.setattr(asgi.ASGIHandler, "handle", spy)
    events = "/api/v1/executions/00000000-0000-4000-8000-000000000000/events"
    code, _, _ = call("GET", events)
    assert code == 404
    assert served == [events]
    code, _, body = call(
        "POST",
        "/api/v1/execute",
        body=b'{"script": "print(1)"}',
        headers=[(b"content-type", b"application/json")],
    )
    assert code == 202 and json.loads(body)["status"] == "queued"
    assert served == [events]  # the submission was the pool's


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
def test_a_wait_holds_no_thread_and_answers_with_the_middlewares_headers():
    """The pool has one thread here: a wait=true request submits in it, then waits on the
    loop, so a GET is served in that same thread meanwhile; the answer is the full result,
    with the headers the middleware chain set and a length of its own."""
    app = asgi.Handler()
    app.pool = ThreadPoolExecutor(1, thread_name_prefix="web")
    answered: list = []
    waiter = threading.Thread(
        target=lambda: answered.append(
            call(
                "POST",
                "/api/v1/execute",
                body=b'{"script": "import time; time.sleep(1.5); print(42)"}',
                headers=[(b"content-type", b"application/json")],
                query=b"wait=true",
                app=app,
            )
        )
    )
    waiter.start()
    try:
        time.sleep(0.5)  # submitted, and waiting
        code, _, body = call("GET", "/healthz", app=app)
        assert code == 200 and not answered  # served while the wait went on
    finally:
        waiter.join(30)
    ((code, headers, body),) = answered
    result = json.loads(body)
    assert (code, result["status"], result["output"]) == (200, "completed", "42\n")
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(body)
    assert headers[b"x-content-type-options"] == b"nosniff"  # the middleware chain's
    assert b"location" not in headers  # the 202's, not the answer's


@pytest.mark.django_db(transaction=True)
def test_a_client_that_goes_away_ends_its_wait_and_gives_its_slot_back(monkeypatch):
    """No worker here: the run stays queued. The client leaves half a second in; the wait
    ends then (not at the run's end, seconds later), answers nothing, and its caller's wait
    slot goes back."""
    from executions import api

    given = []
    give = api.give_wait_slot
    monkeypatch.setattr(api, "give_wait_slot", lambda key: given.append(key) or give(key))
    messages = []
    script = b'{"script": "pass"}'
    body = [{"type": "http.request", "body": script, "more_body": False}]

    async def receive():
        if body:
            return body.pop()
        await asyncio.sleep(0.5)
        return {"type": "http.disconnect"}

    async def send(message):
        messages.append(message)

    json_body = [(b"content-type", b"application/json")]
    scope = scope_of("POST", "/api/v1/execute", script, json_body, query=b"wait=true")
    started = time.monotonic()
    asyncio.run(asgi.application(scope, receive, send))
    assert time.monotonic() - started < 3  # the wait is the run's wall time and more
    assert messages == [] and len(given) == 1


@pytest.mark.django_db(transaction=True)
def test_a_wait_whose_answer_a_middleware_replaced_gives_its_slot_back(monkeypatch):
    """A middleware may answer in the 202's place on its way out (Django's session middleware
    does, when the session was deleted meanwhile): there is nothing to wait for then, and the
    caller's wait slot must not stay taken until it expires."""
    from django.http import HttpResponse

    from executions import api

    given = []
    give = asgi.give_wait_slot
    monkeypatch.setattr(asgi, "give_wait_slot", lambda key: given.append(key) or give(key))
    chain = asgi.application.threaded._middleware_chain

    def replaced(request):
        chain(request)
        return HttpResponse("session gone", status=400)

    monkeypatch.setattr(asgi.application.threaded, "_middleware_chain", replaced)
    code, _, body = call(
        "POST",
        "/api/v1/execute",
        body=b'{"script": "pass"}',
        headers=[(b"content-type", b"application/json")],
        query=b"wait=true",
    )
    assert (code, body) == (400, b"session gone")
    assert len(given) == 1
    assert api.cache.get(given[0]) == 0  # the slot is back


@pytest.mark.django_db(transaction=True)
def test_a_body_bigger_than_any_view_takes_is_refused_before_it_is_read(settings):
    read = []

    async def receive():
        read.append(1)
        return {"type": "http.request", "body": b"x", "more_body": True}

    too_big = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1
    for path in ("/healthz", "/api/v1/execute"):  # a synchronous view, and one that waits
        code, _, body = call("POST", path, length=too_big)
        assert code == 413 and b"the most it may be is" in body
    messages = []

    async def send(message):
        messages.append(message)

    headers = [(b"host", b"localhost"), (b"content-length", b"%d" % too_big)]
    scope = {"type": "http", "method": "POST", "path": "/healthz", "headers": headers}
    asyncio.run(asgi.application(scope, receive, send))
    assert messages[0]["status"] == 413 and read == []  # not one chunk of it was asked for


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_is_refused_with_411():
    headers = [(b"transfer-encoding", b"chunked"), (b"content-type", b"application/json")]
    code, _, body = call(
        "POST", "/api/v1/execute", b'{"script": "print(1)"}', headers, length=False
    )
    assert code == 411 and b"Content-Length" in body


def test_only_short_paths_are_cached():
    asgi._waits.cache_clear()
    asgi.waits("/healthz")
    asgi.waits("/" + "x" * 100_000)
    assert asgi._waits.cache_info().currsize == 1


@pytest.mark.django_db(transaction=True)
def test_a_client_that_goes_away_as_its_answer_waits_for_a_thread_gives_its_slot_back():
    """The run has ended and its answer waits for a thread of a busy pool when the client
    goes away: the wait is cancelled then, and its caller's wait slot still goes back."""
    from django.core.cache import cache
    from django.test import RequestFactory

    from executions import api
    from executions.models import Execution

    from .conftest import run_of

    run = run_of(status=Execution.Status.COMPLETED, limits={"wall_time_s": 5})
    cache.set("waiting:test", 1)
    waiting = api.Waiting(run, False, "waiting:test", RequestFactory().post("/api/v1/execute"))
    pool = ThreadPoolExecutor(1, thread_name_prefix="web")
    busy = threading.Event()
    asked: list = []

    async def main():
        loop = asyncio.get_running_loop()

        def in_thread(work):
            asked.append(work)
            if len(asked) == 2:  # the answer: another request holds the pool's thread
                pool.submit(busy.wait, 10)
            return loop.run_in_executor(pool, work)

        answer = asyncio.ensure_future(waiting.answer(in_thread))
        while len(asked) < 2:
            await asyncio.sleep(0.01)
        answer.cancel()  # the client went away
        with contextlib.suppress(asyncio.CancelledError):
            await answer

    asyncio.run(main())
    busy.set()
    pool.shutdown(wait=True)
    assert cache.get("waiting:test") == 0

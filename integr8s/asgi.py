"""The ASGI application the web server runs (integr8s/gunicorn.py).

Django's own ASGI handler serves a synchronous view with several hops between the loop and a
thread started for that request alone (the middleware chain in one, the view in another, the
request signals in a third): 3.6 ms for GET /healthz here, against 1.1 ms for the same view
under WSGI. So synchronous views are served as under WSGI instead: the whole request (signals,
the middleware chain in its synchronous form, the view, the response's close) in one thread
of a fixed pool of WEB_THREADS, one hop in and one out.

POST /api/v1/execute?wait=true is such a view too. It validates and submits in the pool like
any other, and its answer goes through the middleware chain then: a 202 that carries a
Waiting note (executions.api). The wait is the loop's, holding no thread and no database
connection; each look at the row is a short piece of work in the pool. The final answer (the
result, 200) is sent with the headers the middleware chain gave the 202 (security headers,
cookies), its own status, type and length in place of the 202's. Request metrics
(django_prometheus) therefore time and count the submission, not the script's run.

The events stream is an `async def` view, served by Django's handler: it is long, and the
hops do not matter to it.
"""

import asyncio
import contextlib
import contextvars
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from functools import lru_cache
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "integr8s.settings")

import django  # noqa: E402

django.setup(set_prefix=False)

from asgiref.sync import iscoroutinefunction  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core import signals  # noqa: E402
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.core.handlers.base import BaseHandler  # noqa: E402
from django.http import FileResponse, HttpResponseBase, JsonResponse  # noqa: E402
from django.urls import Resolver404, get_resolver, set_script_prefix  # noqa: E402

from executions.api import WAITS_ON_LOOP, Waiting, give_wait_slot  # noqa: E402
from executions.limits import body_too_big  # noqa: E402

Send = Callable[[Mapping[str, Any]], Awaitable[None]]


def waits(path: str) -> bool:
    """Whether the view at path waits on the event loop (is `async def`). Cached for paths
    of a sensible length only: the server takes paths of ~100 KB, and 4096 of those cached
    would hold 400 MB."""
    return _waits(path) if len(path) <= 256 else _resolves_async(path)


def _resolves_async(path: str) -> bool:
    try:
        return iscoroutinefunction(get_resolver().resolve(path).func)
    except Resolver404:
        return False


_waits = lru_cache(maxsize=4096)(_resolves_async)


def refuse_body(scope: dict) -> HttpResponseBase | None:
    """A request whose body no view takes, answered before a byte of it is read: Django's
    handler reads a whole body (to disk past a size) before any view or check runs, so a
    gigabyte posted to /healthz was read, for 7 s, and then refused. Bigger than
    DATA_UPLOAD_MAX_MEMORY_SIZE (which has room for a run's input files): 413. No
    Content-Length (a chunked body): 411, as Django would read none of it anyway."""
    headers = dict(scope.get("headers") or [])
    length = headers.get(b"content-length")
    if length is None:
        if b"transfer-encoding" in headers:
            return JsonResponse(
                {"detail": "Send the body with a Content-Length (chunked bodies are not read)."},
                status=411,
            )
        return None
    problem = body_too_big(length.decode("latin1"))
    if problem:
        return JsonResponse({"detail": problem}, status=413)
    return None


def headers_of(response: HttpResponseBase) -> list[tuple[bytes, bytes]]:
    """As Django's ASGI handler encodes them, cookies included."""
    out = [
        (
            header.encode("ascii") if isinstance(header, str) else bytes(header),
            value.encode("latin1") if isinstance(value, str) else bytes(value),
        )
        for header, value in response.items()
    ]
    out += [(b"Set-Cookie", c.OutputString().encode("ascii")) for c in response.cookies.values()]
    return out


def body_messages(response: HttpResponseBase, chunk_size: int) -> Iterator[list[dict]]:
    """The response's body as ASGI messages, a list for each part of it (a streaming one as
    it is read, in the thread): a part goes to the loop in one hop, however many messages."""
    # HttpResponseBase has neither: an HttpResponse has content, a streaming one iterates.
    parts: Iterable[bytes] = response if response.streaming else [response.content]  # type: ignore[attr-defined]
    for part in parts:
        yield [
            {
                "type": "http.response.body",
                "body": part[start : start + chunk_size],
                "more_body": True,
            }
            for start in range(0, len(part), chunk_size)
        ]
    yield [{"type": "http.response.body", "body": b"", "more_body": False}]


# A file (a static asset, a run's output file) is read in blocks this big: a 460 KiB script
# bundle went to the loop in eight hops of 64 KiB, each waiting its turn on a busy loop (p50
# 130 ms, p95 750 ms for static assets with 100 users).
FILE_BLOCK = 1 << 20


async def disconnected(receive: Any) -> None:
    """Until the client goes away (its request's body has been read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class Handler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self.threaded = BaseHandler()
        self.threaded.load_middleware(is_async=False)
        self.pool = ThreadPoolExecutor(settings.WEB_THREADS, thread_name_prefix="web")

    async def handle(self, scope: dict, receive: Any, send: Send) -> None:
        refused = refuse_body(scope)
        if refused is not None:
            await self.send_response(refused, send)
            return
        if waits(scope["path"]):
            await super().handle(scope, receive, send)
            return
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        loop = asyncio.get_running_loop()
        with closing(body_file):
            waiting = await loop.run_in_executor(
                self.pool,
                contextvars.copy_context().run,
                self.respond,
                scope,
                body_file,
                loop,
                send,
            )
        if waiting is not None:
            await self.answer(*waiting, loop, receive, send)

    def in_pool(self, loop: asyncio.AbstractEventLoop) -> Callable[[Callable[[], Any]], Any]:
        def run(work: Callable[[], Any]) -> Any:
            return loop.run_in_executor(self.pool, contextvars.copy_context().run, work)

        return run

    async def answer(
        self,
        placeholder: HttpResponseBase,
        waiting: Waiting,
        loop: asyncio.AbstractEventLoop,
        receive: Any,
        send: Send,
    ) -> None:
        """Wait on the loop for a wait=true run, then send its answer with the headers the
        middleware chain gave the placeholder. A client that goes away meanwhile ends the
        wait (and gives its caller's wait slot back), as Django's own handler would."""
        wait = asyncio.ensure_future(waiting.answer(self.in_pool(loop)))
        gone = asyncio.ensure_future(disconnected(receive))
        await asyncio.wait({wait, gone}, return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if not wait.done():
            wait.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await wait
            return
        response = wait.result()
        own = {name.lower() for name in response.headers} | {"content-length", "location"}
        headers = [
            (name, value)
            for name, value in headers_of(placeholder)
            if name.decode("latin1").lower() not in own
        ]
        headers += headers_of(response)
        body = response.content
        headers.append((b"Content-Length", str(len(body)).encode()))
        with contextlib.suppress(OSError):  # the client went away meanwhile
            await send(
                {"type": "http.response.start", "status": response.status_code, "headers": headers}
            )
            await send({"type": "http.response.body", "body": body, "more_body": False})

    def respond(
        self, scope: dict, body_file: Any, loop: asyncio.AbstractEventLoop, send: Send
    ) -> tuple[HttpResponseBase, Waiting] | None:
        """The whole request in this thread, as WSGIHandler serves one; only the sends go to
        the loop (the start and a non-streaming body together). A wait=true submission's
        answer is not sent: it is returned, with its Waiting, for the loop to wait on."""

        def deliver(messages: list[dict]) -> None:
            async def send_all() -> None:
                for message in messages:
                    await send(message)

            asyncio.run_coroutine_threadsafe(send_all(), loop).result()

        WAITS_ON_LOOP.set(True)
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        # A request, or (undecodable, too big) Django's answer instead of one.
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.threaded.get_response(request)
            # Django's own handler sets this note too (the test client reads it); the stubs
            # do not declare it.
            response._handler_class = self.__class__  # type: ignore[attr-defined]
            if isinstance(response, FileResponse):
                response.block_size = FILE_BLOCK
        assert response is not None
        try:
            waiting: Waiting | None = getattr(response, "integr8s_wait", None)
            if waiting is not None:
                return response, waiting
            if (lost := getattr(request, "integr8s_wait", None)) is not None:
                give_wait_slot(lost.slot)  # a middleware answered in the placeholder's place
            start = {"type": "http.response.start", "status": response.status_code}
            start["headers"] = headers_of(response)
            parts = body_messages(response, self.chunk_size)
            if not response.streaming:
                deliver([start, *(message for part in parts for message in part)])
            else:  # the start with its first part, then each part as it is read
                deliver([start, *next(parts)])
                for messages in parts:
                    deliver(messages)
        except OSError:  # the client went away meanwhile
            pass
        finally:
            response.close()  # request_finished: this thread's database connection goes back
        return None


application = Handler()

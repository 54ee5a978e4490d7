"""The JSON API under /api/v1/: submit and follow executions, limits, runtimes, saved scripts.

Who sees what is Execution.objects.visible_to() / owned_by() / controlled_by(), the rule the
pages and the admin apply too: a signed-in user's executions and saved scripts are theirs alone
(404 for everyone else); an anonymous execution is readable and can be run again by whoever
holds its UUID, and is cancelled, listed and replayed (Idempotency-Key) by the browser session
that made it (its session cookie).
"""

import asyncio
import base64
import contextvars
import hashlib
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import nullcontext
from datetime import timedelta
from functools import partial
from typing import Any, NamedTuple, NoReturn

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, generics, permissions, serializers, status
from rest_framework.decorators import api_view, parser_classes
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from accounts.models import User
from executions import examples, limits, notify, runtimes, throttling
from executions.models import (
    ACTIVE,
    Execution,
    ExecutionQuerySet,
    InputLine,
    OutputChunk,
    SavedScript,
    Status,
)
from executions.serializers import (
    AcceptedSerializer,
    ExampleSerializer,
    ExecuteSerializer,
    ExecuteUploadSerializer,
    ExecutionFilterSerializer,
    ExecutionListSerializer,
    ExecutionSerializer,
    InputSerializer,
    K8sLimitsSerializer,
    RuntimesSerializer,
    SavedScriptSerializer,
)
from integr8s.api import (
    CONFLICT,
    THROTTLED,
    TOO_LARGE,
    UNAUTHORIZED,
    VALIDATION_ERROR,
    DetailSerializer,
    PayloadTooLarge,
    conflict,
    too_many,
)
from integr8s.throttling import Refusal

IDEMPOTENCY_KEY_MAX = 200  # Execution.idempotency_key's max_length

NOT_FOUND = OpenApiResponse(DetailSerializer, description="No such execution visible to you.")
EXECUTION_ID = OpenApiParameter(
    "execution_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The execution's id."
)
KEY_REUSED = OpenApiResponse(
    VALIDATION_ERROR.response,
    description="The Idempotency-Key was used before for a different request.",
)


# --- Helpers ---------------------------------------------------------------------------------


def get_execution(request: Request, execution_id: str, among: ExecutionQuerySet) -> Execution:
    """The execution with this UUID among those the rule lets this request see; else 404."""
    missing = exceptions.NotFound(f'There is no execution with id "{execution_id}".')
    try:
        uid = uuid.UUID(execution_id)
    except ValueError:
        raise missing from None
    try:
        return among.get(execution_id=uid)
    except Execution.DoesNotExist:
        raise missing from None


def query_bool(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise serializers.ValidationError({name: ["Must be true or false."]})


def idempotency_key(request: Request) -> str:
    """The Idempotency-Key header, checked. An anonymous caller's key belongs to its browser
    session; one without a session has nothing to tie it to, so its key is refused rather
    than silently ignored (its retry would run the script twice)."""
    key = request.headers.get("Idempotency-Key", "").strip()
    if len(key) > IDEMPOTENCY_KEY_MAX:
        raise serializers.ValidationError(
            {"Idempotency-Key": [f"At most {IDEMPOTENCY_KEY_MAX} characters."]}
        )
    # It is stored and looked up as text, and PostgreSQL refuses NUL in text (a 500).
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise serializers.ValidationError(
            {"Idempotency-Key": ["No control characters (NUL, tab, newline ...): any other text."]}
        )
    if key and not request.user.is_authenticated and not live_session(request):
        raise serializers.ValidationError(
            {
                "Idempotency-Key": [
                    "An anonymous caller's key belongs to its browser session, and this "
                    "request has none. Send the session cookie an earlier answer set, or sign "
                    "in (a JWT or an API key)."
                ]
            }
        )
    return key


def live_session(request: Request) -> bool:
    """Whether the request carries a session that exists (reading it drops an unknown
    cookie's key, so a made-up cookie is no session)."""
    request.session.get("")  # loads the session
    return bool(request.session.session_key)


def key_cutoff() -> Any:
    return timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)


def earlier_submission(request: Request, key: str) -> Execution | None:
    """The execution this caller submitted with this Idempotency-Key, if it is still fresh."""
    mine = Execution.objects.owned_by(request).filter(idempotency_key=key)
    return mine.filter(created_at__gte=key_cutoff()).order_by("created_at", "id").first()


def expire_key(request: Request, key: str) -> None:
    """An expired key may be used again: its old execution lets go of it."""
    mine = Execution.objects.owned_by(request).filter(idempotency_key=key)
    mine.filter(created_at__lt=key_cutoff()).update(idempotency_key="")


def same_request(execution: Execution, data: dict[str, Any]) -> bool:
    version = data.get("python_version") or runtimes.default_version()
    # The limits it asked for; those it left to the defaults may have changed since.
    asked = limits.for_request(data.get("limits")).to_dict()
    held = execution.run_limits.to_dict()
    fields = [limits.REQUESTABLE[name][0] for name in data.get("limits") or {}]
    changed = [field for field in fields if held[field] != asked[field]]
    files = sorted((name, hashlib.sha256(body).hexdigest()) for name, body in data["files"])
    return not changed and (
        execution.script,
        execution.python_version,
        execution.stdin,
        execution.input_digests(),
    ) == (data["script"], version, data.get("stdin") or "", files)


def key_reused(key: str, earlier: Execution) -> Response:
    return Response(
        {
            "Idempotency-Key": [
                f'The key "{key}" was used for a different request (execution '
                f"{earlier.execution_id}: another script, Python version, input, input files "
                "or limits). "
                "Use a new key for a new request."
            ]
        },
        status=status.HTTP_422_UNPROCESSABLE_ENTITY,
    )


def take_wait_slot(request: Request) -> tuple[str, Refusal | None]:
    """A caller holds at most MAX_ACTIVE_PER_CALLER requests waiting at once (wait=true, new
    submissions and replays alike, and events streams: each holds a connection, and a stream
    looks at the database five times a second). Counted in the cache (per process by
    default, site-wide with CACHE_URL); the count expires a while after the longest wait, so a
    process that died mid-wait cannot hold a caller's slots. Returns (the key to give back, or
    why not)."""
    if request.user.is_authenticated:
        key = f"waiting:user:{request.user.pk}"
    else:
        key = f"waiting:ip:{throttling.client_network(request)}"
    longest = 2 * (limits.maxima()["wall_time_s"] + settings.WAIT_MARGIN_S)  # see wait_for
    timeout = int(longest) + 60
    cache.add(key, 0, timeout=timeout)
    try:
        held = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=timeout)
        held = 1
    if held > settings.MAX_ACTIVE_PER_CALLER:
        give_wait_slot(key)
        return key, Refusal(
            f"You already have {held - 1} requests waiting for runs to end (the limit is "
            f"{settings.MAX_ACTIVE_PER_CALLER}). Wait for one, or poll the result instead.",
            retry_after=1,
            reason="waits",
        )
    return key, None


def give_wait_slot(key: str) -> None:
    try:
        cache.decr(key)
    except ValueError:  # expired meanwhile: nothing left to give back
        pass


def given_back[T](fn: Callable[..., T]) -> Callable[..., T]:
    """fn, giving its thread's database connection back as it returns (to the pool, on
    PostgreSQL): for what a waiting request does now and then, outside any request's end
    (which is when Django gives a request's connection back). Each wait=true and each events
    stream held one for its whole wait, a hundred waits took all of the pool's, and every page
    then queued for one (reads p50 4-10 s at 200 users)."""

    def call(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            if connection.vendor == "postgresql" and not connection.in_atomic_block:
                connection.close()  # pooled: back to the pool, not closed

    return call


def briefly[T](fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """sync_to_async(given_back(fn)): for the events stream, which Django's handler serves."""
    return sync_to_async(given_back(fn))


# How a waiting request runs a short piece of synchronous work (a look at the row): in a
# thread of the web server's pool (integr8s.asgi), or as sync_to_async runs it.
type InThread = Callable[[Callable[[], Any]], Awaitable[Any]]


async def thread_sensitive(work: Callable[[], Any]) -> Any:
    return await sync_to_async(work)()


def read_row(pk: int) -> Execution | None:
    return Execution.objects.with_file_flags().filter(pk=pk).first()


async def wait_for(execution: Execution, in_thread: InThread = thread_sensitive) -> Execution:
    """Hold until the run ends, without holding a thread: at most its wall time +
    WAIT_MARGIN_S queued, and as long again once it starts. Woken by the trigger's NOTIFY on
    PostgreSQL and by the write-ahead log's inotify event on SQLite (notify.py); the row is
    read by primary key first and when woken (each look a short query in_thread), and now and
    then regardless. Listening starts before the first look, so a run that ends at any moment
    wakes it."""
    budget = execution.run_limits.wall_time_s + settings.WAIT_MARGIN_S
    deadline = time.monotonic() + budget
    row = execution
    look = given_back(partial(read_row, execution.pk))
    with notify.waiters.watching(str(execution.execution_id)) as wake:
        while True:
            seen = await in_thread(look)
            if seen is None:  # deleted meanwhile (by an operator)
                raise exceptions.NotFound("This execution was deleted.")
            if seen.status == Status.RUNNING and row.status != seen.status:
                deadline = time.monotonic() + budget  # time queued does not eat the run's
            row = seen
            if row.status not in ACTIVE:
                return row
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return row
            await wake.wait(remaining)


def accepted(execution: Execution, request: Request) -> Response:
    return Response(
        AcceptedSerializer(execution, context={"request": request}).data,
        status=status.HTTP_202_ACCEPTED,
        headers={
            "Location": request.build_absolute_uri(
                reverse("api-result", args=[execution.execution_id])
            )
        },
    )


def full(
    execution: Execution,
    request: Request,
    code: int = status.HTTP_200_OK,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        ExecutionSerializer(execution, context={"request": request}).data,
        status=code,
        headers=headers or None,
    )


def submitted(request: Request) -> Any:
    """The submission as ExecuteSerializer takes it: a JSON body as sent; a multipart form's
    fields, with `limits` decoded from its JSON text and each `files` part in base64. A
    multipart body past what a JSON one may be is refused before it is read (Django reads
    file parts to disk without a cap of its own)."""
    if not request.content_type.startswith("multipart/"):
        return request.data
    if problem := limits.body_too_big(request.META.get("CONTENT_LENGTH")):
        raise PayloadTooLarge(problem)
    data: dict[str, Any] = dict(request.POST.items())
    if "limits" in data:
        try:
            data["limits"] = json.loads(data["limits"])
        except ValueError:
            raise serializers.ValidationError(
                {"limits": ['In a form, JSON text: {"memory_mb": 256, "wall_time_s": 10}.']}
            ) from None
    uploads = request.FILES.getlist("files")
    if uploads:
        data["files"] = [
            {"name": u.name, "content_base64": base64.b64encode(u.read()).decode()} for u in uploads
        ]
    for key in request.FILES:
        data.setdefault(key, "")  # any other file part: an unknown field, said so
    return data


# --- Executions ------------------------------------------------------------------------------


@extend_schema(
    summary="Run a script",
    description=(
        "Queues the script and answers 202 with its id; follow it with GET /api/v1/result/{id}. "
        "With `?wait=true` the request is held until the run ends and answers 200 with the full "
        "result (202 with the current state if it did not end in time: the wait is bounded by "
        "the wall-time limit plus a margin, while queued and again while running). "
        "With an `Idempotency-Key` header, a repeat of the same key by the same caller (the same "
        "user; for anonymous callers the same browser session, i.e. its session cookie: without "
        "one the key is refused with 400) answers 200 with the execution it already created "
        "instead of running the script again. A key is remembered for IDEMPOTENCY_KEY_HOURS "
        "(24 h by default); reused in that time with a different script, version or input it "
        "is refused with 422. Replays count against the submission rate, and a caller holds at "
        "most as many `wait=true` requests at once as it may have runs in flight.\n\n"
        "Input files: JSON `files: [{name, content_base64}]`, or the same request as a "
        "multipart form (`limits` as JSON text, each file a `files` part). The script finds "
        "them read-only in /tmp/inputs (`open('/tmp/inputs/data.csv')`; the working directory "
        "is /tmp). Names: no path separators, no `..`, no control characters, at most 100 "
        "characters; at most LIMIT_INPUT_FILES files and LIMIT_INPUT_FILES_KB together (GET "
        "/api/v1/k8s-limits: `input_files`, `input_bytes`): past them a 400 naming the cap "
        "(413 for a body too big to read). Retries and Idempotency-Key replays carry the same "
        "files; a key reused with other files is a 422."
    ),
    request={
        "application/json": ExecuteSerializer,
        "multipart/form-data": ExecuteUploadSerializer,
    },
    parameters=[
        OpenApiParameter(
            "wait", OpenApiTypes.BOOL, description="Hold the request until the run ends."
        ),
        OpenApiParameter(
            "Idempotency-Key",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            description=(
                f"Any text up to {IDEMPOTENCY_KEY_MAX} characters without control characters, "
                "unique per request."
            ),
        ),
    ],
    responses={
        202: OpenApiResponse(
            AcceptedSerializer,
            description="Queued (or still running, with wait=true: then the full execution).",
        ),
        200: OpenApiResponse(
            ExecutionSerializer,
            description=(
                "Finished (wait=true), or an earlier submission with the same Idempotency-Key."
            ),
        ),
        400: VALIDATION_ERROR,
        413: TOO_LARGE,
        415: OpenApiResponse(
            DetailSerializer, description="The body is neither JSON nor a multipart form."
        ),
        422: KEY_REUSED,
        429: THROTTLED,
    },
    examples=[
        OpenApiExample(
            "Hello",
            value={"script": 'print("Hello, world!")', "python_version": "3.12"},
            request_only=True,
        ),
        OpenApiExample(
            "With limits",
            value={"script": "import time; time.sleep(10)", "limits": {"wall_time_s": 15}},
            request_only=True,
        ),
    ],
)
@api_view(["POST"])
@parser_classes([JSONParser, MultiPartParser])
def execute(request: Request) -> HttpResponseBase:
    """POST /api/v1/execute. A wait=true request validates and submits here, then waits for
    its run (Waiting): on the web server's event loop, in no thread (integr8s.asgi), or here,
    in this thread, under a server without that loop (the test client, WSGI)."""
    wait = query_bool(request, "wait")
    key = idempotency_key(request)
    submission = ExecuteSerializer(data=submitted(request))
    submission.is_valid(raise_exception=True)
    data = submission.validated_data

    earlier = earlier_submission(request, key) if key else None
    if earlier is None:
        if key:
            expire_key(request, key)
        refusal = throttling.check_submission(request)
        if refusal:
            return too_many(refusal)
        try:
            # A savepoint only inside an enclosing transaction (tests), to keep it usable after
            # a duplicate key; on its own the INSERT commits by itself, in one round trip.
            with transaction.atomic() if connection.in_atomic_block else nullcontext():
                execution = Execution.objects.submit(
                    **data, idempotency_key=key, **throttling.caller_fields(request)
                )
        except IntegrityError:
            # Two requests with the same key raced; the other one's insert won.
            earlier = earlier_submission(request, key) if key else None
            if earlier is None:
                raise
    elif refusal := throttling.check_rate(request):
        return too_many(refusal)
    if earlier is not None:
        if not same_request(earlier, data):
            return key_reused(key, earlier)
        if not wait:
            return full(earlier, request, headers={"Idempotent-Replayed": "true"})
        execution = earlier
    elif not wait:
        return accepted(execution, request)
    slot, refusal = take_wait_slot(request)
    if refusal:
        return too_many(refusal)
    waiting = Waiting(execution, earlier is not None, slot, request._request)
    if not WAITS_ON_LOOP.get():
        return async_to_sync(waiting.answer)()
    # The server waits on its loop, then answers with Waiting.answer's response. The request
    # keeps the note too: should a middleware answer in this response's place, the server
    # still gives the wait slot back.
    response = accepted(execution, request)
    response.integr8s_wait = waiting  # type: ignore[attr-defined]  # a note for integr8s.asgi
    request._request.integr8s_wait = waiting  # type: ignore[attr-defined]  # the same
    return response


def shown_as(view: Any, drf_view: Any) -> None:
    """An async view that wraps a DRF one: the schema generator (and anything else that asks)
    sees the DRF view, its serializers and documentation."""
    for name in ("cls", "initkwargs", "view_class", "view_initkwargs"):
        setattr(view, name, getattr(drf_view, name))


# True while integr8s.asgi's Handler serves the request: it waits for a run on its event loop.
WAITS_ON_LOOP: contextvars.ContextVar[bool] = contextvars.ContextVar("waits_on_loop", default=False)


class Waiting(NamedTuple):
    """A wait=true submission, accepted: what its answer needs once the run ends."""

    execution: Execution
    replayed: bool
    slot: str  # the caller's wait slot, given back when the wait ends
    request: HttpRequest

    async def answer(self, in_thread: InThread = thread_sensitive) -> HttpResponse:
        """Wait for the run's end, then the answer (the full result: 200; or 202 when the
        wait ran out); each look at the database a short piece of work in_thread."""
        try:
            execution = await wait_for(self.execution, in_thread)
        except BaseException as exc:  # deleted meanwhile, or the client went away
            await in_thread(partial(give_wait_slot, self.slot))
            if not isinstance(exc, exceptions.NotFound):
                raise
            return JsonResponse({"detail": str(exc.detail)}, status=status.HTTP_404_NOT_FOUND)

        def answer() -> JsonResponse:
            give_wait_slot(self.slot)
            return finished(self.request, execution, self.replayed)

        # Shielded: a client that goes away while this waits for a thread (a busy pool)
        # cancels the wait, and the answer must still run to give the slot back.
        return await asyncio.shield(in_thread(given_back(answer)))


def finished(request: HttpRequest, execution: Execution, replayed: bool) -> JsonResponse:
    """The answer to a wait=true request: what full() answers, rendered outside DRF (its
    checks ran when the request came in)."""
    data = ExecutionSerializer(execution, context={"request": request}).data
    if replayed:
        return JsonResponse(data, headers={"Idempotent-Replayed": "true"})
    return JsonResponse(data, status=status.HTTP_200_OK if execution.is_terminal else 202)


@extend_schema(
    summary="An execution's result",
    description=(
        "Anonymous executions are readable by anyone holding the id; a user's by that user only."
    ),
    parameters=[EXECUTION_ID],
    responses={200: ExecutionSerializer, 404: NOT_FOUND},
)
@api_view(["GET"])
def result(request: Request, execution_id: str) -> Response:
    among = Execution.objects.visible_to(request).with_file_flags()
    return full(get_execution(request, execution_id, among), request)


class PaginatedExecutionListSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ExecutionListSerializer(many=True)


@extend_schema(
    operation_id="v1_executions_list",
    summary="Your executions",
    description=(
        "Newest first, 20 a page, without input and output (read those with /result/{id}). "
        "Signed-in users see their own runs. Anonymous callers see the runs made in their "
        "browser session (session cookie); without one the list is empty."
    ),
    parameters=[ExecutionFilterSerializer, OpenApiParameter("page", OpenApiTypes.INT)],
    responses={
        200: PaginatedExecutionListSerializer,
        400: VALIDATION_ERROR,
        404: OpenApiResponse(DetailSerializer, description="No such page."),
    },
)
@api_view(["GET"])
def execution_list(request: Request) -> Response:
    filters = ExecutionFilterSerializer(data=request.query_params)
    filters.is_valid(raise_exception=True)
    executions = Execution.objects.owned_by(request).filter(**filters.validated_data)
    executions = executions.select_related("retry_of").order_by("-created_at", "-id")
    paginator = PageNumberPagination()
    page = paginator.paginate_queryset(executions, request)
    data = ExecutionListSerializer(page, many=True, context={"request": request}).data
    return paginator.get_paginated_response(data)


@extend_schema(
    summary="Send input to a running execution",
    description=(
        'For an execution submitted with `interactive: true`, while it runs: `{"text": '
        '"Ada\\n"}` is written to its standard input (input() reads up to the newline), '
        '`{"eof": true}` ends its input. Only its owner may send input (the user; for an '
        "anonymous run, the browser session that made it): 404 for anyone else. Not running, "
        "or not interactive: 409. All input together is capped like `stdin`: 413 past it."
    ),
    request=InputSerializer,
    parameters=[EXECUTION_ID],
    responses={
        202: OpenApiResponse(description="Taken: the worker hands it to the script."),
        400: VALIDATION_ERROR,
        404: NOT_FOUND,
        409: CONFLICT,
        413: TOO_LARGE,
    },
)
@api_view(["POST"])
def execution_input(request: Request, execution_id: str) -> Response:
    execution = get_execution(request, execution_id, Execution.objects.controlled_by(request))
    given = InputSerializer(data=request.data)
    given.is_valid(raise_exception=True)
    text, eof = given.validated_data.get("text", ""), given.validated_data["eof"]
    if not execution.interactive:
        return conflict(
            "This execution is not interactive: it was given all its input before it ran."
        )
    if execution.status != Status.RUNNING:
        state = "has not started yet" if execution.status == Status.QUEUED else "has ended"
        return conflict(f"This execution {state}: input goes only to a running one.")
    cap = execution.run_limits.stdin_bytes
    if execution.input_bytes() + len(text.encode()) > cap:
        raise PayloadTooLarge(
            f"Input is limited to {limits.human_bytes(cap)} in all (stdin included)."
        )
    if text:
        InputLine.objects.create(execution=execution, text=text)
    if eof:
        InputLine.objects.create(execution=execution, eof=True)
    return Response({"detail": "Sent."}, status=status.HTTP_202_ACCEPTED)


EVENTS_DESCRIPTION = """Server-sent events (text/event-stream) for one execution:

- `output`: `{"stream": "stdout" | "stderr", "text": "...", "seq": N}` as it is printed (in
  order; its `id:` is `seq`);
- `status`: `{"status": "queued" | "running" | ..., "awaiting_input": false}` when either
  changes (`awaiting_input`: an interactive run's script waits for input now);
- `end`: the full result (as GET /api/v1/result/{id}), then the stream closes.

Resumable: send `Last-Event-ID: N` (or `?last_event_id=N`) to get only output after N; a run
that already ended answers `end` at once. Who may read it is who may read the result.

    curl -N http://127.0.0.1:8000/api/v1/executions/<id>/events
"""


@extend_schema(
    summary="Follow an execution as it runs (server-sent events)",
    description=EVENTS_DESCRIPTION,
    parameters=[EXECUTION_ID],
    responses={(200, "text/event-stream"): OpenApiTypes.STR, 404: NOT_FOUND},
)
@api_view(["GET"])
def execution_events_check(request: Request, execution_id: str) -> Response:
    """Authentication and the access rule, the DRF way, for execution_events (below)."""
    execution = get_execution(request, execution_id, Execution.objects.visible_to(request))
    slot, refusal = take_wait_slot(request)
    if refusal:
        return too_many(refusal)
    response = Response(status=status.HTTP_204_NO_CONTENT)
    response.integr8s_execution = execution  # type: ignore[attr-defined]  # a note for the stream
    response.integr8s_slot = slot  # type: ignore[attr-defined]  # given back when it ends
    return response


EVENTS_TICK_S = 0.2  # how often a quiet stream looks for new output without a wake-up
EVENTS_KEEPALIVE_S = 15.0


def sse(event: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def execution_events(
    request: HttpRequest, execution_id: str
) -> HttpResponse | StreamingHttpResponse:
    """GET /api/v1/executions/<id>/events: the stream waits on the event loop, never in a
    thread; each look at the database is one short query in a thread."""
    checked = await briefly(execution_events_check)(request, execution_id)
    execution = getattr(checked, "integr8s_execution", None)
    if execution is None:  # a 4xx from the check
        return checked
    slot = checked.integr8s_slot  # type: ignore[attr-defined]  # set beside integr8s_execution
    raw = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id") or "0"
    try:
        after = max(0, int(raw))
    except ValueError:
        await sync_to_async(give_wait_slot)(slot)
        return JsonResponse({"last_event_id": ["Must be a number."]}, status=400)
    response = StreamingHttpResponse(
        event_stream(request, execution, after, slot), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # proxies must not hold events back
    return response


shown_as(execution_events, execution_events_check)


def serialized(execution: Execution, request: HttpRequest) -> dict[str, Any]:
    return dict(ExecutionSerializer(execution, context={"request": request}).data)


@briefly
def look(pk: int, after: int) -> tuple[Execution | None, list[OutputChunk]]:
    row = Execution.objects.filter(pk=pk).first()
    chunks = list(OutputChunk.objects.filter(execution_id=pk, seq__gt=after).order_by("seq"))
    return row, chunks


async def event_stream(
    request: HttpRequest, execution: Execution, after: int, slot: str
) -> AsyncIterator[str]:
    try:
        async for part in _events(request, execution, after):
            yield part
    finally:  # ended, or the client went away: its wait slot goes back
        await sync_to_async(give_wait_slot)(slot)


async def _events(request: HttpRequest, execution: Execution, after: int) -> AsyncIterator[str]:
    last_status: tuple[str, bool] | None = None
    quiet_since = time.monotonic()
    # Listening from before the first look: output or an end announced between two looks
    # wakes the next wait at once.
    with notify.waiters.watching(str(execution.execution_id)) as wake:
        while True:
            row, chunks = await look(execution.pk, after)
            if row is None:
                yield sse("end", {"detail": "This execution was deleted."})
                return
            now = (row.status, row.awaiting_input)
            if now != last_status and row.status in ACTIVE:
                last_status = now
                yield sse("status", {"status": row.status, "awaiting_input": row.awaiting_input})
            for chunk in chunks:
                after = chunk.seq
                text = chunk.text
                if chunk.stream == "stderr":
                    text = runtimes.neutral_paths(text)
                data = {"stream": chunk.stream, "text": text, "seq": chunk.seq}
                yield sse("output", data, chunk.seq)
            if row.status not in ACTIVE:
                result = await sync_to_async(serialized)(row, request)
                yield sse("status", {"status": row.status})
                yield sse("end", result)
                return
            if chunks:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > EVENTS_KEEPALIVE_S:
                quiet_since = time.monotonic()
                yield ": still running\n\n"  # a comment: keeps proxies from timing the stream out
            await wake.wait(EVENTS_TICK_S)


@extend_schema(
    summary="An output file of an execution",
    description=(
        "A file the script left in /tmp/outputs (listed in the result's `files`), under the "
        "run's own access rule: 404 for anyone who may not read the run. Raster images are "
        "served inline (a plot shows in the page); everything else as an attachment."
    ),
    parameters=[EXECUTION_ID],
    responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 404: NOT_FOUND},
)
@api_view(["GET"])
def execution_file(request: Request, execution_id: str, name: str) -> FileResponse:
    execution = get_execution(request, execution_id, Execution.objects.visible_to(request))
    found = execution.files.filter(name=name).first()
    if found is None:
        raise exceptions.NotFound(f'This execution has no output file "{name}".')
    inline = found.is_raster
    response = FileResponse(
        found.file.open("rb"),
        as_attachment=not inline,
        filename=found.name,
        content_type=found.content_type if inline else "application/octet-stream",
    )
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@extend_schema(
    summary="Cancel an execution",
    description=(
        "A queued run is cancelled at once (200). A running one is flagged and its sandbox "
        "killed by the worker within moments (202; poll the result). Already finished: 409. "
        "Only its owner may cancel a run: the user, or for an anonymous run the browser "
        "session that made it (404 for anyone else)."
    ),
    request=None,
    parameters=[EXECUTION_ID],
    responses={
        200: OpenApiResponse(ExecutionSerializer, description="Cancelled."),
        202: OpenApiResponse(ExecutionSerializer, description="Cancellation under way."),
        404: NOT_FOUND,
        409: CONFLICT,
    },
)
@api_view(["POST"])
def execution_cancel(request: Request, execution_id: str) -> Response:
    execution = get_execution(request, execution_id, Execution.objects.controlled_by(request))
    mine = execution.owner_id is None or execution.owner_id == request.user.pk
    by = "its owner" if mine else "an operator"
    if not execution.is_terminal:
        execution.cancel(by=by)
        execution.refresh_from_db()
    if execution.is_terminal and execution.error_type != Execution.ErrorType.CANCELLED:
        return conflict(
            f"This execution already ended (status {execution.status}); there is nothing to cancel."
        )
    if execution.status == Execution.Status.CANCELLED:
        return full(execution, request)
    return full(execution, request, status.HTTP_202_ACCEPTED)


@extend_schema(
    summary="Run an execution again",
    description=(
        "Queues a new execution with the same script, version and input, under the current "
        "limits. Counts against your rate limit like a new submission. The execution must "
        "have ended (409 otherwise)."
    ),
    request=None,
    parameters=[EXECUTION_ID],
    responses={
        202: AcceptedSerializer,
        404: NOT_FOUND,
        409: CONFLICT,
        429: THROTTLED,
    },
)
@api_view(["POST"])
def execution_retry(request: Request, execution_id: str) -> Response:
    original = get_execution(request, execution_id, Execution.objects.visible_to(request))
    if problem := original.retry_problem():
        return conflict(problem)
    refusal = throttling.check_submission(request)
    if refusal:
        return too_many(refusal)
    return accepted(original.retry(**throttling.caller_fields(request)), request)


# --- Limits, runtimes, examples --------------------------------------------------------------


@extend_schema(
    summary="The limits in force and the Python versions available", responses=K8sLimitsSerializer
)
@api_view(["GET"])
def k8s_limits(request: Request) -> Response:
    lim = limits.current()
    versions = runtimes.versions()
    memory = f"{lim.memory_mib}Mi"
    data = {
        "cpu_limit": lim.cpu_limit,
        "cpu_request": lim.cpu_request,
        "memory_limit": memory,
        "memory_request": memory,
        "execution_timeout": math.ceil(lim.wall_time_s),
        "supported_runtimes": versions,
        "python_versions": versions,
        "default_python_version": runtimes.default_version(),
        "backend": settings.EXECUTION_BACKEND,
        **{k: v for k, v in lim.to_dict().items() if k not in ("cpu_limit", "cpu_request")},
        "network": False,
        "maxima": limits.maxima(),
    }
    return Response(K8sLimitsSerializer(data).data)


@extend_schema(summary="The Python versions available", responses=RuntimesSerializer)
@api_view(["GET"])
def runtime_list(request: Request) -> Response:
    default = runtimes.default_version()
    local = settings.EXECUTION_BACKEND == "local"  # pods carry their image's packages
    versions = [
        {"version": v, "default": v == default, "packages": runtimes.packages(v) if local else []}
        for v in runtimes.versions()
    ]
    return Response(RuntimesSerializer({"default": default, "versions": versions}).data)


@extend_schema(summary="Example scripts", responses=ExampleSerializer(many=True))
@api_view(["GET"])
def example_list(request: Request) -> Response:
    return Response(ExampleSerializer(examples.EXAMPLES, many=True).data)


# --- Saved scripts ---------------------------------------------------------------------------


class AuthenticatedRequest(Request):
    """A request that IsAuthenticated let through: its user is never anonymous."""

    user: User


class SavedScriptMixin(generics.GenericAPIView[SavedScript]):
    serializer_class = SavedScriptSerializer
    permission_classes = [permissions.IsAuthenticated]
    lookup_field = "script_id"
    request: AuthenticatedRequest

    def get_queryset(self) -> QuerySet[SavedScript]:
        return SavedScript.objects.filter(owner=self.request.user)

    def get_object(self) -> SavedScript:
        try:
            uuid.UUID(self.kwargs[self.lookup_field])
        except ValueError:
            raise exceptions.NotFound("There is no saved script with that id.") from None
        return super().get_object()

    def save_or_name_taken(self, serializer: BaseSerializer[SavedScript], **fields: Any) -> None:
        try:
            with transaction.atomic():
                serializer.save(**fields)
        except IntegrityError:
            raise serializers.ValidationError(
                {"name": ["You already have a saved script with this name. Pick another name."]}
            ) from None


SCRIPT_NOT_FOUND = OpenApiResponse(DetailSerializer, description="No such saved script of yours.")


@extend_schema_view(
    get=extend_schema(
        summary="Your saved scripts",
        responses={200: SavedScriptSerializer(many=True), 401: UNAUTHORIZED},
    ),
    post=extend_schema(
        summary="Save a script",
        description="An account keeps at most MAX_SAVED_SCRIPTS (500 by default): past, 409.",
        responses={
            201: SavedScriptSerializer,
            400: VALIDATION_ERROR,
            401: UNAUTHORIZED,
            409: CONFLICT,
        },
    ),
)
class SavedScriptList(SavedScriptMixin, generics.ListCreateAPIView):
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if problem := SavedScript.room_problem(self.request.user):
            return conflict(problem)
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: BaseSerializer[SavedScript]) -> None:
        self.save_or_name_taken(serializer, owner=self.request.user)


@extend_schema_view(
    get=extend_schema(
        summary="A saved script",
        responses={200: SavedScriptSerializer, 401: UNAUTHORIZED, 404: SCRIPT_NOT_FOUND},
    ),
    put=extend_schema(
        summary="Replace a saved script",
        responses={
            200: SavedScriptSerializer,
            400: VALIDATION_ERROR,
            401: UNAUTHORIZED,
            404: SCRIPT_NOT_FOUND,
        },
    ),
    patch=extend_schema(
        summary="Change a saved script",
        responses={
            200: SavedScriptSerializer,
            400: VALIDATION_ERROR,
            401: UNAUTHORIZED,
            404: SCRIPT_NOT_FOUND,
        },
    ),
    delete=extend_schema(
        summary="Delete a saved script",
        responses={204: None, 401: UNAUTHORIZED, 404: SCRIPT_NOT_FOUND},
    ),
)
class SavedScriptDetail(SavedScriptMixin, generics.RetrieveUpdateDestroyAPIView):
    def perform_update(self, serializer: BaseSerializer[SavedScript]) -> None:
        self.save_or_name_taken(serializer)


# --- Anything else under /api/ -----------------------------------------------------------------


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def not_found(request: Request, *args: Any, **kwargs: Any) -> NoReturn:
    """A JSON 404 for unknown API paths (and no APPEND_SLASH redirect that would drop a POST)."""
    path = request.path
    alternative = path[:-1] if path.endswith("/") else path + "/"
    try:
        match = resolve(alternative)
        hint = "" if match.func is not_found else f" Did you mean {alternative}?"
    except Resolver404:
        hint = ""
    raise exceptions.NotFound(f"There is no API endpoint at {path}.{hint}")

"""Submission limits shared by the API and the editor: who the caller is, a rate per caller
and a cap on runs waiting or running. The counters themselves are integr8s.throttling's."""

import time
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.http import HttpRequest
from django.utils.crypto import get_random_string

from executions.models import ANONYMOUS_RUNS, Execution
from integr8s.throttling import Refusal, client_ip, client_network, parse_rate, rate_wait

__all__ = [
    "Refusal",
    "caller_fields",
    "check_queue",
    "check_rate",
    "check_submission",
    "client_ip",
    "client_network",
]


def caller_fields(request: HttpRequest) -> dict[str, Any]:
    """Who a new run belongs to, the same for pages and API: the signed-in user, else this
    browser session (its cookie is then the anonymous caller's key to its runs: history,
    cancel, Idempotency-Key). The session keeps a token naming its runs (ANONYMOUS_RUNS), made
    at its first run: it survives the key change at sign-in, so the runs follow; and a session
    made for this run is written once, as the answer goes out (not made at once for its key
    and then written again for the token: five queries then, two now)."""
    ip = client_ip(request) or None
    if request.user.is_authenticated:
        return {"owner": request.user, "session_key": "", "client_ip": ip}
    session = request.session
    token = session.get(ANONYMOUS_RUNS)
    if not token:
        token = session.session_key or get_random_string(32, VALID_KEY_CHARS)
        session[ANONYMOUS_RUNS] = token
    return {"owner": None, "session_key": token, "client_ip": ip}


def check_rate(request: HttpRequest) -> Refusal | None:
    """None if this caller is within its submission rate (and count one); else why not.
    Replays of an Idempotency-Key count too: each can hold a request as long as a run."""
    user = request.user
    if user.is_authenticated:
        key, rate = f"submit:user:{user.pk}", settings.THROTTLE_USER
    else:
        key, rate = f"submit:ip:{client_network(request)}", settings.THROTTLE_ANON
    allowed, period = parse_rate(rate)
    wait = rate_wait(key, allowed, period, time.time())
    if wait:
        return Refusal(
            f"Too many runs: the limit is {allowed} per {period} seconds. "
            f"Try again in {wait} seconds.",
            retry_after=wait,
            reason="submissions",
        )
    return None


def check_queue() -> Refusal | None:
    """None if the queue has room for one more run; else why not (503: the site is full)."""
    queued = Execution.objects.queued().count()  # bounded by MAX_QUEUED: an index range
    if queued >= settings.MAX_QUEUED:
        return Refusal(
            f"integr8s is busy: {queued} scripts are waiting to run, as many as it queues. "
            "Please try again in a minute.",
            retry_after=30,
            status=503,
            reason="queue_full",
        )
    return None


def check_submission(request: HttpRequest) -> Refusal | None:
    """None if this caller may submit now (and count the submission); else why not."""
    if refusal := check_queue():
        return refusal
    user = request.user
    active = Execution.objects.for_caller(user, client_ip(request)).active().count()
    if active >= settings.MAX_ACTIVE_PER_CALLER:
        return Refusal(
            f"You already have {active} scripts waiting or running (the limit is "
            f"{settings.MAX_ACTIVE_PER_CALLER}). Wait for one to finish, or cancel one.",
            retry_after=1,
            reason="runs_in_flight",
        )
    return check_rate(request)

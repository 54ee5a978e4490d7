"""Submission limits shared by the API and the editor: a rate per caller and an active cap."""

import ipaddress
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from executions.models import Execution

PERIODS = {"s": 1, "sec": 1, "min": 60, "m": 60, "hour": 3600, "h": 3600, "day": 86400, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """'30/min' -> (30, 60)."""
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip().lower()]


def valid_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return ""


def client_ip(request) -> str:
    """The caller's IP address, or "" if none is known. Always a valid address or "": it is
    stored in, and filtered on, an IP address column (a forged header must not be a 500)."""
    # Behind a proxy the operator sets BEHIND_PROXY and the proxy sets X-Forwarded-For.
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded and (ip := valid_ip(forwarded.split(",")[0])):
            return ip
    return valid_ip(request.META.get("REMOTE_ADDR", ""))


@dataclass
class Refusal:
    message: str
    retry_after: int  # seconds

    def refuse(self, response):
        """Make a page that shows this refusal a 429 that says when to try again."""
        response.status_code = 429
        response["Retry-After"] = str(self.retry_after)
        return response


def check_submission(request) -> Refusal | None:
    """None if this caller may submit now (and count the submission); else why not."""
    user = request.user
    ip = client_ip(request)
    if user.is_authenticated:
        key, rate = f"submit:user:{user.pk}", settings.THROTTLE_USER
    else:
        key, rate = f"submit:ip:{ip}", settings.THROTTLE_ANON

    active = Execution.objects.for_caller(user, ip).active().count()
    if active >= settings.MAX_ACTIVE_PER_CALLER:
        return Refusal(
            f"You already have {active} scripts waiting or running (the limit is "
            f"{settings.MAX_ACTIVE_PER_CALLER}). Wait for one to finish, or cancel one.",
            retry_after=1,
        )

    allowed, period = parse_rate(rate)
    wait = rate_wait(key, allowed, period, time.time())
    if wait:
        return Refusal(
            f"Too many runs: the limit is {allowed} per {period} seconds. "
            f"Try again in {wait} seconds.",
            retry_after=wait,
        )
    return None


def check_signup(request) -> Refusal | None:
    """None if this address may create an account now (and count it); else why not."""
    return check_address(request, "signup", settings.THROTTLE_SIGNUP, "new accounts")


def check_login(request) -> Refusal | None:
    """None if this address may try a password now (and count it); else why not."""
    return check_address(request, "login", settings.THROTTLE_LOGIN, "sign-in attempts")


def check_address(request, action: str, rate: str, what: str) -> Refusal | None:
    allowed, period = parse_rate(rate)
    wait = rate_wait(f"{action}:ip:{client_ip(request)}", allowed, period, time.time())
    if wait:
        return Refusal(
            f"Too many {what} from your address. Try again in {wait} seconds.",
            retry_after=wait,
        )
    return None


def rate_wait(key: str, allowed: int, period: int, now: float) -> int:
    """Count one submission under key and return 0, or the seconds to wait when over the rate.

    A sliding window from two fixed-window counters (this period's and the last one's,
    weighted by how much of it still overlaps the window): constant work per request, where a
    list of timestamps grows with the rate.
    """
    window, into = divmod(now, period)
    current, previous = f"{key}:{int(window)}", f"{key}:{int(window) - 1}"
    counts = cache.get_many([current, previous])
    now_count, before = counts.get(current, 0), counts.get(previous, 0)
    overlap = 1 - into / period
    if now_count + before * overlap >= allowed:
        if now_count >= allowed or before == 0:
            return max(1, math.ceil(period - into))  # until this window ends
        # Until the last window's weight has fallen enough: before * overlap' < allowed - now.
        needed_overlap = (allowed - now_count) / before
        return max(1, math.ceil((overlap - needed_overlap) * period))
    cache.add(current, 0, timeout=2 * period + 1)
    try:
        cache.incr(current)
    except ValueError:  # expired between add and incr
        cache.set(current, 1, timeout=2 * period + 1)
    return 0

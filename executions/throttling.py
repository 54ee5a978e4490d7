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
    now = time.time()
    history = [t for t in cache.get(key, []) if t > now - period]
    if len(history) >= allowed:
        wait = max(1, math.ceil(history[0] + period - now)) if history else period
        return Refusal(
            f"Too many runs: the limit is {allowed} per {period} seconds. "
            f"Try again in {wait} seconds.",
            retry_after=wait,
        )
    history.append(now)
    cache.set(key, history, period)
    return None

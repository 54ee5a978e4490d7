"""Rates per caller, shared by every app: who the caller is (its address), sliding-window
counters, and the refusals they give (429 with Retry-After).

Password attempts are counted here too, once for every way a password is presented: the
authentication backend (accounts.backends) and the forms that check a password themselves
call check_password_attempt().
"""

import ipaddress
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

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


def client_ip(request: HttpRequest) -> str:
    """The caller's IP address, or "" if none is known. Always a valid address or "": it is
    stored in, and filtered on, an IP address column (a forged header must not be a 500).

    Behind TRUSTED_PROXIES proxies, each of which appends the address it received the request
    from to X-Forwarded-For, the client is the TRUSTED_PROXIES-th entry counted from the
    right. Anything further left was written by the client itself and is never believed.
    """
    proxies = settings.TRUSTED_PROXIES
    if proxies:
        forwarded = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [hop for hop in forwarded if hop]
        if forwarded:
            # Fewer entries than proxies: every entry there was written by one of ours.
            return valid_ip(forwarded[-min(proxies, len(forwarded))])
    return valid_ip(request.META.get("REMOTE_ADDR", ""))


def client_network(request: HttpRequest) -> str:
    """Whom a rate counts for a caller known by its address: the IPv4 address, or the IPv6
    address's /64. One line (a home, a server) gets a whole /64, so counted by address an
    IPv6 client would be 2^64 callers, each with a fresh limit."""
    ip = client_ip(request)
    if ":" not in ip:
        return ip
    address = ipaddress.IPv6Address(ip)
    if address.ipv4_mapped:  # an IPv4 client seen through a dual-stack socket
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


def is_loopback(request: HttpRequest) -> bool:
    """True when the caller (as client_ip() sees it, so not a proxy on this host) is local."""
    ip = client_ip(request)
    return bool(ip) and ipaddress.ip_address(ip).is_loopback


@dataclass
class Refusal:
    message: str
    retry_after: int  # seconds
    status: int = 429  # 429: this caller is over a limit; 503: the site is (a full queue)
    # Which limit (executions.metrics.REFUSAL_REASONS): the overview dashboard's refusals panel.
    reason: str = "other"

    def __post_init__(self) -> None:
        # A Refusal is made only to be given: count it here, whichever way it is answered.
        from executions.metrics import REFUSALS

        REFUSALS.labels(reason=self.reason).inc()

    def refuse(self, response: HttpResponse) -> HttpResponse:
        """Make a page that shows this refusal a 429 (or 503) that says when to try again."""
        response.status_code = self.status
        response["Retry-After"] = str(self.retry_after)
        return response


class TooManyPasswordAttempts(Exception):
    """Raised where a password is checked over THROTTLE_LOGIN: the middleware (pages) and the
    API's exception handler answer it with 429 and Retry-After. Even a right password."""

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.message)
        self.refusal = refusal


def check_signup(request: HttpRequest) -> Refusal | None:
    """None if this address may create an account now (and count it); else why not."""
    return check_address(request, "signup", settings.THROTTLE_SIGNUP, "new accounts")


def check_login(request: HttpRequest) -> Refusal | None:
    """None if this address may try a password now (and count it); else why not."""
    return check_address(request, "login", settings.THROTTLE_LOGIN, "sign-in attempts")


def check_password_attempt(request: HttpRequest | None) -> None:
    """Count one password attempt from this request's address; raise over THROTTLE_LOGIN.

    Without a request (a management command, a test's client.login()) there is no address
    to count against.
    """
    if request is None:
        return
    refusal = check_login(request)
    if refusal is not None:
        raise TooManyPasswordAttempts(refusal)


# A refusal's reason (executions.metrics.REFUSAL_REASONS) for each action counted per address.
ADDRESS_REASONS = {"signup": "signups", "login": "password_attempts", "reset": "password_resets"}


def check_address(request: HttpRequest, action: str, rate: str, what: str) -> Refusal | None:
    allowed, period = parse_rate(rate)
    wait = rate_wait(f"{action}:ip:{client_network(request)}", allowed, period, time.time())
    if wait:
        return Refusal(
            f"Too many {what} from your address. Try again in {wait} seconds.",
            retry_after=wait,
            reason=ADDRESS_REASONS.get(action, "other"),
        )
    return None


def rate_wait(key: str, allowed: int, period: int, now: float) -> int:
    """Count one event under key and return 0, or the seconds to wait when over the rate.

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

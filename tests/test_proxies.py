"""Behind BEHIND_PROXY proxies the client's address is counted from the right of
X-Forwarded-For: what a client writes there itself never picks its address."""

import pytest
from django.test import RequestFactory
from rest_framework.test import APIClient

from integr8s.throttling import client_ip, client_network

pytestmark = pytest.mark.django_db


def ip(forwarded=None, remote="10.0.0.254"):
    meta = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_ip(RequestFactory().get("/", **meta))


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "203.0.113.9", "10.0.0.254"),  # no proxy: the header is the client's own words
        (1, "203.0.113.9", "203.0.113.9"),
        (1, "1.2.3.4, 203.0.113.9", "203.0.113.9"),  # "1.2.3.4" was written by the client
        (2, "1.2.3.4, 203.0.113.9, 10.0.0.7", "203.0.113.9"),
        (2, "203.0.113.9", "203.0.113.9"),  # fewer entries than proxies: all are theirs
        (1, "", "10.0.0.254"),
        (1, "garbage", ""),
        (1, " 2001:db8::1 ", "2001:db8::1"),
    ],
)
def test_the_client_is_counted_from_the_right(settings, proxies, forwarded, expected):
    settings.TRUSTED_PROXIES = proxies
    assert ip(forwarded) == expected


def test_behind_proxy_reads_as_a_count(monkeypatch):
    from integr8s import settings as project_settings

    for raw, count in [("", 0), ("false", 0), ("true", 1), ("1", 1), ("2", 2)]:
        monkeypatch.setenv("BEHIND_PROXY", raw)
        assert project_settings.proxies() == count


@pytest.fixture
def one_proxy(settings):
    """BEHIND_PROXY=1, as its settings come out (TRUSTED_PROXIES and the forwarded scheme)."""
    settings.TRUSTED_PROXIES = 1
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


def test_a_client_cannot_walk_past_the_sign_up_limit_by_naming_itself(settings, one_proxy):
    """Behind one proxy that appends, each request claims a new address on the left."""
    settings.THROTTLE_SIGNUP = "1/hour"
    for n, expected in [(1, 201), (2, 429), (3, 429)]:
        client = APIClient(
            REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}, 203.0.113.9"
        )
        body = {"username": f"user{n}", "password": "a-long-pass-123"}
        assert client.post("/api/v1/auth/register", body, format="json").status_code == expected


def test_a_client_cannot_walk_past_the_login_limit_by_naming_itself(settings, one_proxy, alice):
    settings.THROTTLE_LOGIN = "2/min"
    codes = [
        APIClient(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}, 203.0.113.9")
        .post("/api/v1/auth/token", {"username": "alice", "password": "x"}, format="json")
        .status_code
        for n in range(4)
    ]
    assert codes == [401, 401, 429, 429]


@pytest.mark.parametrize(
    ("remote", "network"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:db8:0:0:abcd:1:2:3", "2001:db8::/64"),
        ("::ffff:203.0.113.9", "203.0.113.9"),  # an IPv4 client on a dual-stack socket
        ("garbage", ""),
    ],
)
def test_rates_count_an_ipv6_client_by_its_64(remote, network):
    assert client_network(RequestFactory().get("/", REMOTE_ADDR=remote)) == network


def test_anonymous_submissions_from_one_ipv6_network_share_a_rate(settings):
    settings.THROTTLE_ANON = "2/min"
    body = {"script": "print(1)"}
    codes = [
        APIClient(REMOTE_ADDR=f"2001:db8::{n}").post("/api/v1/execute", body, format="json")
        for n in range(1, 4)
    ]
    assert [r.status_code for r in codes] == [202, 202, 429]

"""Response headers: HSTS when HTTPS is on, a Permissions-Policy, no caching of private pages
and API answers; /metrics for Prometheus only (a bearer token, or loopback)."""

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_https_sends_hsts(client, settings):
    settings.SECURE_HSTS_SECONDS = 31536000  # what HTTPS=true sets
    response = client.get(reverse("editor"), secure=True)
    assert response["Strict-Transport-Security"] == "max-age=31536000"


def test_https_turns_hsts_on_in_the_settings(monkeypatch):
    import importlib

    from integr8s import settings as project_settings

    monkeypatch.setenv("HTTPS", "true")
    try:
        assert importlib.reload(project_settings).SECURE_HSTS_SECONDS == 365 * 86400
        monkeypatch.setenv("HTTPS", "false")
        assert importlib.reload(project_settings).SECURE_HSTS_SECONDS == 0
    finally:
        monkeypatch.delenv("HTTPS")
        importlib.reload(project_settings)


@pytest.mark.parametrize("path", ["/", "/executions/", "/accounts/login/", "/api/v1/runtimes"])
def test_every_page_has_a_permissions_policy_and_is_not_stored(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert "camera=()" in response["Permissions-Policy"]
    assert "no-store" in response["Cache-Control"]


def test_private_pages_and_api_answers_are_not_stored(client, alice, alice_api):
    client.force_login(alice)
    for path in ["/scripts/", "/accounts/", "/executions/"]:
        assert "no-store" in client.get(path)["Cache-Control"], path
    for path in ["/api/v1/executions/", "/api/v1/auth/me", "/api/v1/scripts/"]:
        assert "no-store" in alice_api.get(path)["Cache-Control"], path
    r = APIClient().post("/api/v1/execute", {"script": "print(1)"}, format="json")
    assert "no-store" in r["Cache-Control"]


def test_static_files_keep_their_own_caching(client):
    response = client.get("/static/css/site.css")
    assert response.status_code == 200
    assert "no-store" not in response.get("Cache-Control", "")


# --- /metrics -------------------------------------------------------------------------------


def test_metrics_answer_loopback_without_a_token(settings):
    settings.METRICS_TOKEN = ""
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="::1").get("/metrics").status_code == 200
    refused = Client(REMOTE_ADDR="203.0.113.7").get("/metrics")
    assert refused.status_code == 403
    assert "METRICS_TOKEN" in refused.content.decode()


def test_a_proxy_on_this_host_does_not_make_everyone_loopback(settings):
    settings.METRICS_TOKEN = ""
    settings.TRUSTED_PROXIES = 1
    client = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert client.get("/metrics").status_code == 403


def test_metrics_want_the_bearer_token_when_one_is_set(settings):
    settings.METRICS_TOKEN = "t0ken-for-prometheus"
    outside = Client(REMOTE_ADDR="10.1.2.3")
    assert outside.get("/metrics").status_code == 401
    assert outside.get("/metrics").headers["WWW-Authenticate"].startswith("Bearer")
    assert outside.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/metrics").status_code == 401  # loopback too: the token decides
    ok = outside.get("/metrics", HTTP_AUTHORIZATION="Bearer t0ken-for-prometheus")
    assert ok.status_code == 200
    assert "integr8s_executions_submitted_total" in ok.content.decode()


def test_metrics_are_read_only(client):
    assert client.post("/metrics").status_code == 405


def test_the_scrape_configs_send_what_metrics_want():
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent / "k8s" / "monitoring"
    cluster = yaml.safe_load((root / "prometheus-kubernetes.yml").read_text())
    auth = cluster["scrape_configs"][0]["authorization"]
    assert auth["type"] == "Bearer" and auth["credentials_file"].endswith("/METRICS_TOKEN")
    local = yaml.safe_load((root / "prometheus.yml").read_text())
    targets = [
        t for job in local["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    ]
    assert all(t.startswith("127.0.0.1:") for t in targets)  # loopback: no token needed

"""Limits, runtimes, example scripts, the OpenAPI schema and its interactive docs."""

import re
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from rest_framework.test import APIClient

from executions import examples, runtimes

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return APIClient()


def test_k8s_limits_keep_the_original_shape(client):
    r = client.get("/api/v1/k8s-limits")
    assert r.status_code == 200
    body = r.json()
    assert body["cpu_limit"] == "1000m" and body["cpu_request"] == "100m"
    assert body["memory_limit"] == body["memory_request"] == "128Mi"
    assert body["execution_timeout"] == 5 and isinstance(body["execution_timeout"], int)
    assert body["supported_runtimes"] == body["python_versions"] == runtimes.versions()
    assert body["default_python_version"] == runtimes.default_version()
    assert body["processes"] == 64
    assert body["tmp_bytes"] == 16 * 1024 * 1024
    assert body["output_bytes"] == 1024 * 1024
    assert body["script_bytes"] == body["stdin_bytes"] == 64 * 1024
    assert body["network"] is False


def test_k8s_limits_follow_the_settings(client, settings):
    settings.LIMITS = {**settings.LIMITS, "wall_time_s": 2.5, "memory_mb": 256}
    body = client.get("/api/v1/k8s-limits").json()
    assert (body["execution_timeout"], body["memory_limit"]) == (3, "256Mi")
    assert body["wall_time_s"] == 2.5


def test_k8s_limits_say_the_file_caps(client, settings):
    settings.LIMITS = {**settings.LIMITS, "input_files": 3, "input_files_kb": 100}
    body = client.get("/api/v1/k8s-limits").json()
    assert (body["input_files"], body["input_bytes"]) == (3, 100 * 1024)
    assert (body["output_files"], body["files_bytes"]) == (20, 8 * 1024 * 1024)


def test_runtimes_mark_the_default(client):
    body = client.get("/api/v1/runtimes").json()
    assert body["default"] == runtimes.default_version()
    assert [v["version"] for v in body["versions"]] == runtimes.versions()
    assert [v["version"] for v in body["versions"] if v["default"]] == [body["default"]]


def test_example_scripts(client):
    body = client.get("/api/v1/example-scripts").json()
    assert [e["slug"] for e in body] == [e["slug"] for e in examples.EXAMPLES]
    demo = next(e for e in body if e["slug"] == "version-demo")
    assert demo["python_version"] == "3.12"
    assert "python_version" not in next(e for e in body if e["slug"] == "hello-world")


@pytest.mark.parametrize(
    "path", ["/api/v1/k8s-limits", "/api/v1/runtimes", "/api/v1/example-scripts"]
)
def test_read_only_endpoints_are_get_only(client, path):
    r = client.post(path, {}, format="json")
    assert r.status_code == 405
    assert "detail" in r.json()


def test_the_schema_has_no_warnings_or_errors():
    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = out.getvalue()
    for path in (
        "/api/v1/execute:",
        "/api/v1/result/{execution_id}:",
        "/api/v1/k8s-limits:",
        "/api/v1/runtimes:",
        "/api/v1/example-scripts:",
        "/api/v1/executions/:",
        "/api/v1/executions/{execution_id}/cancel:",
        "/api/v1/executions/{execution_id}/retry:",
        "/api/v1/scripts/:",
        "/api/v1/scripts/{script_id}/:",
        "/api/v1/auth/register:",
        "/api/v1/auth/token:",
        "/api/v1/auth/token/refresh:",
        "/api/v1/auth/me:",
    ):
        assert path in schema


def test_the_schema_describes_the_error_responses(client):
    schema = client.get("/api/schema/", headers={"Accept": "application/json"}).json()
    execute = schema["paths"]["/api/v1/execute"]["post"]["responses"]
    assert {"200", "202", "400", "413", "429"} <= set(execute)
    cancel = schema["paths"]["/api/v1/executions/{execution_id}/cancel"]["post"]["responses"]
    assert {"404", "409"} <= set(cancel)
    assert "401" in schema["paths"]["/api/v1/scripts/"]["get"]["responses"]


def test_the_docs_load_under_the_content_security_policy(client):
    r = client.get("/api/docs/")
    assert r.status_code == 200
    html = r.content.decode()
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    # Every script is a file from this site: no inline script, nothing from a CDN.
    scripts = re.findall(r"<script([^>]*)>", html)
    assert scripts and all('src="/' in attrs for attrs in scripts)
    assert "cdn" not in html.lower()
    init = re.search(r'<script src="([^"]*script=[^"]*)"', html).group(1)
    r = client.get(init.replace("&amp;", "&"))
    assert r.status_code == 200
    assert r["Content-Type"].startswith("application/javascript")
    assert "/api/schema/" in r.content.decode()


@pytest.mark.skipif(
    not apps.is_installed("drf_spectacular_sidecar"),
    reason="drf_spectacular_sidecar is not in INSTALLED_APPS (Swagger UI's files are served by it)",
)
def test_the_docs_assets_are_served_from_this_site(client):
    html = client.get("/api/docs/").content.decode()
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        r = client.get(asset)
        assert r.status_code == 200, asset

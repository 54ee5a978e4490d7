"""Safe defaults: DEBUG off, a secret key of the installation's own (never one from this
repository), debug pages without credentials, and deployment files that carry no key."""

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from django.core.exceptions import ImproperlyConfigured

from integr8s import secret_key
from tests.conftest import database_url
from tests.k8s.kustomize import OVERLAYS, render

ROOT = Path(__file__).resolve().parent.parent
UNSET = ("DEBUG", "SECRET_KEY", "SECRET_KEY_FILE", "DJANGO_SETTINGS_MODULE")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    return {**env, "DJANGO_SETTINGS_MODULE": "integr8s.settings", **extra}


def start_settings(**extra: str) -> subprocess.CompletedProcess:
    """Load the settings in a fresh process, as `make run` would, with only `extra` set."""
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({'debug': s.DEBUG, 'key': s.SECRET_KEY}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env=clean_env(**extra),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


PASSWORD = "".join(["s3cret", "-pass"])  # built, so the page's source excerpts cannot show it


def debug_500_page(request) -> str:
    from django.views.debug import technical_500_response

    try:
        raise RuntimeError("It broke")
    except RuntimeError:
        return technical_500_response(request, *sys.exc_info()).content.decode()


# --- DEBUG and the secret key at start-up ---------------------------------------------------


def test_debug_is_off_unless_asked_for(tmp_path):
    key_file = str(tmp_path / "key")
    default = start_settings(SECRET_KEY_FILE=key_file)
    asked = start_settings(SECRET_KEY_FILE=key_file, DEBUG="true")
    assert default.returncode == 0, default.stderr
    assert json.loads(default.stdout)["debug"] is False
    assert json.loads(asked.stdout)["debug"] is True


def test_a_key_is_made_at_first_start_for_this_user_only_and_kept(tmp_path):
    key_file = tmp_path / "var" / "secret_key"

    first = start_settings(SECRET_KEY_FILE=str(key_file))
    again = start_settings(SECRET_KEY_FILE=str(key_file))

    assert first.returncode == 0, first.stderr
    key = json.loads(first.stdout)["key"]
    assert len(key) >= 50 and key not in secret_key.PUBLIC_KEYS
    assert key_file.read_text().strip() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert json.loads(again.stdout)["key"] == key  # sessions and tokens survive a restart
    assert list(key_file.parent.iterdir()) == [key_file]  # no drafts left behind


def test_processes_starting_together_agree_on_one_key(tmp_path):
    key_file = tmp_path / "secret_key"
    keys: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        keys.append(secret_key.load("", key_file))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(keys) == 8 and len(set(keys)) == 1
    assert key_file.read_text().strip() == keys[0]


@pytest.mark.parametrize("key", sorted(secret_key.PUBLIC_KEYS))
def test_a_key_this_repository_ever_shipped_is_refused(tmp_path, key):
    with pytest.raises(ImproperlyConfigured, match="published example key"):
        secret_key.load(key, tmp_path / "unused")
    result = start_settings(SECRET_KEY=key, SECRET_KEY_FILE=str(tmp_path / "k"))
    assert result.returncode != 0
    assert "published example key" in result.stderr


def test_no_deployment_file_sets_a_key_the_app_would_accept():
    """Whatever a deployment file or its instructions set SECRET_KEY to literally (not from
    the environment or a command), the app refuses it."""
    files = [ROOT / "docker-compose.yml", ROOT / "Dockerfile", ROOT / "README.md"]
    files += [*ROOT.glob("k8s/**/*.y*ml"), *ROOT.glob("k8s/**/*.md")]
    written = {
        value
        for path in files
        for value in re.findall(r"\bSECRET_KEY[=:]\s*[\"']?([^\s\"']+)", path.read_text())
        if not value.startswith("$")  # ${SECRET_KEY:-}, "$(openssl rand ...)"
    }
    for value in written:
        with pytest.raises(ImproperlyConfigured):
            secret_key.check(value, "test")


def test_a_key_file_others_may_read_is_refused(tmp_path):
    key_file = tmp_path / "secret_key"
    key_file.write_text("a-long-random-looking-key-that-leaked-through-its-mode-0644\n")
    key_file.chmod(0o644)
    with pytest.raises(ImproperlyConfigured, match=f"chmod 600 {key_file}"):
        secret_key.load("", key_file)


def test_no_key_and_nowhere_to_make_one_is_a_clear_refusal(tmp_path):
    (tmp_path / "a-file").write_text("")
    result = start_settings(SECRET_KEY_FILE=str(tmp_path / "a-file" / "secret_key"))
    assert result.returncode != 0
    assert "No SECRET_KEY is set and none could be made" in result.stderr


def test_debug_pages_do_not_show_the_database_url(rf, settings):
    """DEBUG=true is for development, but people run it exposed: the debug 500 page listed
    DATABASE_URL, password included."""
    settings.DEBUG = True
    settings.DATABASE_URL = "postgres://integr8s:" + PASSWORD + "@db:5432/integr8s"
    request = rf.get("/", HTTP_X_CACHE_URL="redis://:" + PASSWORD + "@cache:6379/0")

    html = debug_500_page(request)

    assert "It broke" in html  # it is the debug page, with settings and headers
    assert "DATABASE_URL" in html and "HTTP_X_CACHE_URL" in html
    assert PASSWORD not in html


@pytest.mark.django_db
def test_without_debug_errors_are_plain_pages_and_static_files_are_served(client):
    missing = client.get("/no-such-page")
    assert missing.status_code == 404
    assert "Not found" in missing.content.decode()
    assert "URLconf" not in missing.content.decode()  # not Django's technical 404
    assert client.get("/static/css/site.css").status_code == 200


# --- what ships for deployments -----------------------------------------------------------


def test_compose_carries_no_key_and_publishes_on_loopback_only():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        env = service.get("environment", {})
        if "SECRET_KEY" in env:
            assert env["SECRET_KEY"] in ("${SECRET_KEY:-}", ""), name
            assert env["SECRET_KEY_FILE"].startswith("/var/lib/integr8s/"), name
            assert "keys:/var/lib/integr8s" in service["volumes"], name
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to all"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "install -d -o 10001 -g 10001 -m 0700 /var/lib/integr8s" in dockerfile


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_takes_its_keys_from_a_secret_made_out_of_band(overlay):
    objects = render(overlay)
    for obj in objects:
        if obj["kind"] == "Secret":
            assert "SECRET_KEY" not in obj.get("stringData", {}), obj["metadata"]["name"]
            assert obj["metadata"]["name"] != "integr8s-keys"
        if obj["kind"] in ("Deployment", "Job"):
            refs = [
                source["secretRef"]["name"]
                for c in obj["spec"]["template"]["spec"]["containers"]
                for source in c.get("envFrom", [])
                if "secretRef" in source
            ]
            assert "integr8s-keys" in refs, obj["metadata"]["name"]


# --- make run, as a fresh clone starts it -----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_make_run_serves_safely_with_nothing_set(tmp_path):
    """`manage.py serve` (what `make run` starts) with no DEBUG and no SECRET_KEY: it makes a
    key, serves pages and static files, and answers a missing page without debug details."""
    port = free_port()
    key_file = tmp_path / "secret_key"
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=ROOT,
        env=clean_env(DATABASE_URL=database_url(), SECRET_KEY_FILE=str(key_file)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                if fetch(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the site did not come up"
            time.sleep(0.2)
        assert fetch(f"{base}/")[0] == 200
        assert fetch(f"{base}/static/css/site.css")[0] == 200
        status, body = fetch(f"{base}/no-such-page")
        assert status == 404 and "URLconf" not in body and "Traceback" not in body
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=40)

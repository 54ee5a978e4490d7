"""Operations for real, on this machine: `make run`'s server and worker (manage.py serve) with
Debian's Prometheus and Alertmanager started by `make monitor`, and Debian's Caddy in front of
it serving the API over HTTPS; the logs both processes wrote meanwhile.

Each site runs on a scratch SQLite database of its own, as `make run` does, so nothing here
touches the test database other tests share."""

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((ROOT / "k8s" / "monitoring" / "dashboards").glob("*.json"))
TOKEN = "live-test-metrics-token"
MARKER = "c4f3-b4b3"  # in the script and its output: neither may reach a log

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url, data=None, headers=None, context=None, timeout=20):
    request = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        return response.status, response.read()


def wait_for(what, check, timeout=60.0, proc=None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited ({proc.returncode})")
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout:g} s (last: {last!r})")


def stop(proc, timeout=40):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl+C in a terminal sends
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass
class Site:
    port: int
    worker_port: int
    token: str
    log: Path
    execution_id: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_site(folder: Path, token: str) -> tuple[Site, subprocess.Popen]:
    """`make run` (manage.py serve) on free ports, JSON logs into a file, one run done."""
    port, worker_port = free_port(), free_port()
    log = folder / "site.log"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "SECRET_KEY_FILE": str(folder / "secret_key"),
        "METRICS_TOKEN": token,
        "LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)]
        + ["--worker-metrics-port", str(worker_port)],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for("the site is ready", lambda: fetch(f"{base}/readyz")[0] == 200, 90, proc)
        script = f"print('{MARKER}')"
        status, body = fetch(
            f"{base}/api/v1/execute?wait=true",
            json.dumps({"script": script}).encode(),
            {"Content-Type": "application/json"},
            timeout=60,
        )
        result = json.loads(body)
        assert (status, result["status"], result["output"]) == (200, "completed", MARKER + "\n")
        fetch(f"{base}/api/v1/result/{result['execution_id']}")
    except BaseException:
        stop(proc)
        raise
    return Site(port, worker_port, token, log, result["execution_id"]), proc


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """Sites by token ("" is `make run`'s default: /metrics answers loopback), made on first
    use and stopped at the end of the module."""
    started: dict[str, tuple[Site, subprocess.Popen]] = {}

    def get(token: str) -> Site:
        if token not in started:
            started[token] = start_site(tmp_path_factory.mktemp("site"), token)
        return started[token][0]

    yield get
    for _, proc in started.values():
        stop(proc)


def needs(*programs: str, package: str):
    missing = [p for p in programs if not shutil.which(p)]
    return pytest.mark.skipif(
        bool(missing),
        reason=f"{', '.join(missing)} not installed (apt-get install {package}; make test does)",
    )


def prometheus_api(port: int, path: str, **query) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    body = json.loads(fetch(url)[1])
    assert body["status"] == "success", body
    return body["data"]


def value(prometheus_port: int, expr: str) -> float | None:
    result = prometheus_api(prometheus_port, "query", query=expr)["result"]
    return float(result[0]["value"][1]) if result else None


@needs("prometheus", "promtool", package="prometheus")
@needs("prometheus-alertmanager", "amtool", package="prometheus-alertmanager")
@pytest.mark.parametrize("token", ["", TOKEN], ids=["loopback", "with-METRICS_TOKEN"])
def test_make_monitor_scrapes_every_target_up_with_integr8s_metrics(sites, tmp_path, token):
    site = sites(token)
    prometheus_port, alertmanager_port = free_port(), free_port()
    monitor = subprocess.Popen(
        ["make", "-s", "monitor", f"PORT={site.port}", f"WORKER_METRICS_PORT={site.worker_port}"],
        cwd=ROOT,
        env={
            **os.environ,
            "PROMETHEUS_PORT": str(prometheus_port),
            "ALERTMANAGER_PORT": str(alertmanager_port),
            "METRICS_TOKEN": token,
            "SCRAPE_INTERVAL": "1s",
            "MONITOR_DIR": str(tmp_path),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def all_up():
            targets = prometheus_api(prometheus_port, "targets")["activeTargets"]
            health = {t["labels"]["job"]: t["health"] for t in targets}
            errors = {t["labels"]["job"]: t["lastError"] for t in targets if t["lastError"]}
            assert "down" not in health.values() or not errors, errors
            return health if set(health.values()) == {"up"} else None

        health = wait_for("every target up", all_up, 60, monitor)
        assert set(health) == {"integr8s-web", "integr8s-worker", "prometheus", "alertmanager"}

        def scraped():
            submitted = value(
                prometheus_port, 'sum(integr8s_executions_submitted_total{job="integr8s-web"})'
            )
            finished = value(
                prometheus_port,
                'sum(integr8s_executions_finished_total{job="integr8s-worker",status="completed"})',
            )
            return (submitted, finished) if submitted and finished else None

        assert wait_for("the site's and worker's metrics", scraped, 30) == (1, 1)
        assert value(prometheus_port, "max(integr8s_workers_alive)") == 1
        assert value(prometheus_port, 'max(integr8s_executions_active{status="queued"})') == 0
        assert value(prometheus_port, "max(integr8s_execution_oldest_queued_seconds)") == 0
        assert value(prometheus_port, "count(integr8s_worker_heartbeat_age_seconds)") >= 1
        assert value(prometheus_port, 'sum(integr8s_executions_in_flight{component="worker"})') == 0

        # Every panel of the overview and workers dashboards shows something after one run: a
        # panel on a metric nobody feeds (the local sandbox's start time was one) is a bug.
        # Two are about events this site has not had: failed runs, and refused requests by
        # view (the refusals by reason are there, at 0).
        def panels_without_data():
            return [
                f"{path.stem}: {panel['title']} ({target['refId']})"
                for path in DASHBOARDS
                for panel in json.loads(path.read_text())["panels"]
                if panel["datasource"]["type"] == "prometheus"
                for target in panel["targets"]
                if not prometheus_api(prometheus_port, "query", query=target["expr"])["result"]
            ]

        deadline = time.monotonic() + 20
        while len(empty := panels_without_data()) > 2 and time.monotonic() < deadline:
            time.sleep(1)
        assert empty == [
            "overview: Failures per second, by error type (A)",
            "overview: Refusals per second, by reason (B)",
        ]

        rules = prometheus_api(prometheus_port, "rules")["groups"][0]["rules"]
        assert len(rules) == 13 and all(r["health"] == "ok" for r in rules), rules
        states = {r["name"]: r["state"] for r in rules}
        assert (
            states["Integr8sDatabaseUnreadable"]
            == states["Integr8sNoWorkerHeartbeat"]
            == "inactive"
        )

        def alertmanager_found():
            found = prometheus_api(prometheus_port, "alertmanagers")["activeAlertmanagers"]
            return found if found else None

        (found,) = wait_for("Alertmanager discovered", alertmanager_found, 30)
        assert f"127.0.0.1:{alertmanager_port}" in found["url"]
        status = json.loads(fetch(f"http://127.0.0.1:{alertmanager_port}/api/v2/status")[1])
        assert "receiver: webhook" in status["config"]["original"]
    finally:
        stop(monitor)
    out = monitor.stdout.read().decode(errors="replace") if monitor.stdout else ""
    # make reports the Ctrl+C as its own interrupt; what matters is that both stopped.
    assert monitor.returncode in (0, -signal.SIGINT), out
    assert f"Prometheus on http://127.0.0.1:{prometheus_port}/" in out
    assert "stopped; stopping the other" not in out
    for port in (prometheus_port, alertmanager_port):
        leftover = subprocess.run(["pgrep", "-f", f"127.0.0.1:{port}"], capture_output=True)
        assert leftover.stdout == b"", f"something on :{port} outlived Ctrl+C"


@needs("caddy", package="caddy")
def test_the_shipped_caddyfile_is_valid():
    result = subprocess.run(
        ["caddy", "validate", "--config", "deploy/Caddyfile", "--adapter", "caddyfile"],
        cwd=ROOT,
        env={**os.environ, "CADDY_ADMIN": "off"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


@needs("caddy", package="caddy")
def test_caddy_in_front_of_make_run_serves_the_api_over_https(sites, tmp_path):
    site = sites(TOKEN)
    https_port, http_port = free_port(), free_port()
    caddy = subprocess.Popen(
        ["caddy", "run", "--config", "deploy/Caddyfile", "--adapter", "caddyfile"],
        cwd=ROOT,
        env={
            **os.environ,
            "UPSTREAM": f"127.0.0.1:{site.port}",
            "HTTPS_PORT": str(https_port),
            "HTTP_PORT": str(http_port),
            "CADDY_ADMIN": "off",
            "HOME": str(tmp_path),
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"https://127.0.0.1:{https_port}"
    try:
        root = tmp_path / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        wait_for("Caddy's local CA", root.exists, 60, caddy)
        verified = ssl.create_default_context(cafile=str(root))

        # The original platform's sanity check, `curl -k https://127.0.0.1/api/v1/k8s-limits`:
        # no server name is sent for an address; the chain is still checked against the CA.
        unnamed = ssl.create_default_context(cafile=str(root))
        unnamed.check_hostname = False
        status, body = wait_for(
            "the API over HTTPS",
            lambda: fetch(f"{base}/api/v1/k8s-limits", context=unnamed),
            60,
            caddy,
        )
        assert status == 200 and {"python_versions", "memory_limit"} <= json.loads(body).keys()
        # By name, fully verified: the certificate is localhost's, from Caddy's CA.
        named = fetch(f"https://localhost:{https_port}/api/v1/k8s-limits", context=verified)
        assert named[0] == 200 and json.loads(named[1]) == json.loads(body)
        if shutil.which("curl"):
            curl = subprocess.run(
                ["curl", "-sfk", f"{base}/api/v1/k8s-limits"], capture_output=True, timeout=30
            )
            assert curl.returncode == 0 and json.loads(curl.stdout) == json.loads(body)

        # /metrics is Prometheus' (directly, with its token), not the public front's.
        with pytest.raises(urllib.error.HTTPError) as refused:
            fetch(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, context=unnamed)
        assert refused.value.code == 404
        # Plain HTTP is sent to HTTPS.
        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as moved:
            opener.open(f"http://localhost:{http_port}/api/v1/k8s-limits", timeout=10)
        assert moved.value.code in (301, 308)
        assert moved.value.headers["Location"].startswith("https://localhost")
    finally:
        stop(caddy, timeout=20)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_web_and_worker_log_one_json_line_per_event_with_the_id_and_never_the_script(sites):
    site = sites(TOKEN)
    time.sleep(1)  # the worker's and web's last lines
    lines = site.log.read_text().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    about_it = [e for e in events if e.get("execution_id") == site.execution_id]
    worker = [e["message"] for e in about_it if e["logger"] == "integr8s.worker"]
    assert any(" start " in m for m in worker) and any(" end status=completed" in m for m in worker)
    requests = [e for e in events if e["logger"] in ("gunicorn.access", "uvicorn.access")]
    assert any(
        e["path"] == f"/api/v1/result/{site.execution_id}" and e["status"] == 200 for e in requests
    ), requests
    assert all(
        e["execution_id"] == site.execution_id for e in requests if site.execution_id in e["path"]
    )
    assert MARKER not in site.log.read_text()

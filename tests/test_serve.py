"""`make run`'s command: web server and worker together, stopped together by Ctrl+C."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from executions.models import Execution
from tests.conftest import database_url

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, data=None):
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=20) as response:
        return response.status, json.loads(response.read())


def children_running(parent: int, marker: str) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(parent), "-f", marker], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_serve_runs_web_and_worker_restarts_a_dead_worker_and_stops_both_on_ctrl_c():
    port = free_port()
    metrics_port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "serve",
            "--port",
            str(port),
            "--worker-metrics-port",
            str(metrics_port),
        ],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = get(f"{base}/readyz")
                if status == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")
            assert time.monotonic() < deadline, "the site did not become ready"
            time.sleep(0.2)
        assert body["workers"] == 1

        status, result = get(
            f"{base}/api/v1/execute?wait=true", json.dumps({"script": "print(6 * 7)"}).encode()
        )
        assert (status, result["status"], result["output"]) == (200, "completed", "42\n")

        # A connection left idle for a few seconds is still open for the next request: a
        # POST on one the server had closed is lost (a client may not send it again).
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() and conn.sock is not None
        time.sleep(3)  # longer than gunicorn's default keep-alive (2 s)
        conn.request(
            "POST", "/api/v1/execute", body=b'{"script": "print(1)"}',
            headers={"Content-Type": "application/json", "X-Forwarded-For": "203.0.113.9"},
        )  # fmt: skip
        answer = conn.getresponse()
        body = answer.read()
        assert answer.status == 202, body
        conn.close()
        # Without BEHIND_PROXY the client is the peer, whatever X-Forwarded-For says.
        queued = json.loads(body)["execution_id"]
        assert Execution.objects.get(execution_id=queued).client_ip == "127.0.0.1"

        # The worker's own metrics, on loopback: what it finished.
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/", timeout=10) as r:
            assert 'integr8s_executions_finished_total{error_type="",' in r.read().decode()

        # A worker that dies is started again; the site keeps serving meanwhile.
        (worker_pid,) = children_running(proc.pid, "runworker")
        os.kill(worker_pid, signal.SIGKILL)
        assert get(f"{base}/api/v1/k8s-limits")[0] == 200
        deadline = time.monotonic() + 30
        while children_running(proc.pid, "runworker") in ([], [worker_pid]):
            assert time.monotonic() < deadline, "the worker was not started again"
            time.sleep(0.2)
        status, result = get(
            f"{base}/api/v1/execute?wait=true", json.dumps({"script": "print(7)"}).encode()
        )
        assert (status, result["output"]) == (200, "7\n")
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl+C in a terminal sends
        out, _ = proc.communicate(timeout=40)
    assert proc.returncode == 0, out.decode(errors="replace")
    assert f"integr8s is up on http://127.0.0.1:{port}/" in out.decode()
    assert "the worker stopped (killed by signal SIGKILL); starting it again in 1 s" in (
        out.decode()
    )
    leftover = subprocess.run(
        ["pgrep", "-f", f"127.0.0.1:{port}"], capture_output=True, text=True
    ).stdout
    assert leftover == ""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_requests_that_wait_hold_no_database_connection_while_they_wait():
    """More wait=true requests than the pool has connections, with no worker to end their
    runs: a read of a result must still get a connection (it queued for one until the pool's
    timeout, 10 s, and answered 500 when each wait held a connection for its whole wait)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the connection pool is PostgreSQL's (SQLite opens a connection per thread)")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DATABASE_POOL_SIZE": "3",
        "WEB_THREADS": "2",
    }
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:integr8s.gunicorn",
         "integr8s.asgi:application", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                get(f"{base}/healthz")
                break
            except OSError:
                assert web.poll() is None and time.monotonic() < deadline, "no web server"
                time.sleep(0.2)
        status, queued = get(f"{base}/api/v1/execute", json.dumps({"script": "pass"}).encode())
        assert status == 202

        def wait_for_a_run():
            try:
                get(f"{base}/api/v1/execute?wait=true", json.dumps({"script": "pass"}).encode())
            except OSError:
                pass  # the server is stopped under it at the end

        for _ in range(6):
            threading.Thread(target=wait_for_a_run, daemon=True).start()
        time.sleep(2)  # all six submitted and waiting
        status, body = get(f"{base}/api/v1/result/{queued['execution_id']}")
        assert (status, body["status"]) == (200, "queued")
    finally:
        os.killpg(web.pid, signal.SIGINT)  # gunicorn's quick stop: the waits are not awaited
        web.wait(timeout=30)

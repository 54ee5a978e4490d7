"""Log lines (integr8s/logging.py): text by default, JSON with LOG_FORMAT=json, the execution id
where there is one, never a script or its output."""

import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from integr8s.logging import Formatter

ROOT = Path(__file__).resolve().parent.parent
RUN = uuid.UUID("0b7e5c6a-3f7d-4a8e-9d0c-5e1f2a3b4c5d")


def record(name="integr8s.worker", msg="run %s start python=%s", args=(str(RUN), "3.12"), **extra):
    rec = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def as_json(rec) -> dict:
    line = Formatter(as_json=True).format(rec)
    assert "\n" not in line
    return json.loads(line)


def test_a_worker_line_in_json_carries_the_execution_id():
    line = as_json(record())
    assert line["execution_id"] == str(RUN)
    assert line["message"] == f"run {RUN} start python=3.12"
    assert (line["level"], line["logger"]) == ("INFO", "integr8s.worker")
    assert line["time"].endswith("+00:00")


def test_the_id_may_be_a_uuid_object_or_given_as_extra():
    assert as_json(record(msg="run %s: live output dropped", args=(RUN,)))["execution_id"] == (
        str(RUN)
    )
    given = as_json(record(msg="queued", args=(), execution_id=RUN))
    assert given["execution_id"] == str(RUN)


def test_a_line_about_no_execution_has_no_id():
    line = as_json(record(msg="worker %s started: backend=%s", args=("host:1:abc", "local")))
    assert "execution_id" not in line


def test_text_is_the_default_and_readable():
    text = Formatter().format(record())
    assert text.endswith(f"INFO integr8s.worker run {RUN} start python=3.12")
    assert "execution_id=" not in text  # already in the message
    text = Formatter().format(record(msg="queued", args=(), execution_id=RUN))
    assert text.endswith(f"queued execution_id={RUN}")


def test_a_gunicorn_request_line_is_method_path_status_and_the_id_from_the_path():
    atoms = {
        "m": "GET",
        "U": f"/api/v1/result/{RUN}",
        "q": "token=secret",
        "s": "200",
        "M": 12,
        "h": "127.0.0.1",
        "r": f"GET /api/v1/result/{RUN}?token=secret HTTP/1.1",
        "f": "https://example.com/?script=print(1)",
    }
    rec = record(name="gunicorn.access", msg='%(h)s "%(r)s" %(s)s', args=(atoms,))
    line = as_json(rec)
    assert line["message"] == f"GET /api/v1/result/{RUN} 200 12ms"
    assert (line["method"], line["status"], line["duration_ms"]) == ("GET", 200, 12)
    assert line["execution_id"] == str(RUN)
    assert "secret" not in json.dumps(line) and "script" not in json.dumps(line)
    assert Formatter().format(rec).endswith(f"gunicorn.access GET /api/v1/result/{RUN} 200 12ms")


def test_a_uvicorn_request_line_drops_the_query():
    args = ("127.0.0.1:5000", "POST", f"/executions/{RUN}/cancel?x=1", "1.1", 302)
    line = as_json(record(name="uvicorn.access", msg='%s - "%s %s HTTP/%s" %d', args=args))
    assert line["message"] == f"POST /executions/{RUN}/cancel 302"
    assert line["execution_id"] == str(RUN) and line["status"] == 302


def test_only_the_known_fields_are_written():
    """Django's error records carry the request; a careless extra= could carry a script."""
    rec = record(msg="boom", args=(), script="print('SECRET')", request=object())
    line = as_json(rec)
    assert set(line) == {"time", "level", "logger", "message"}


def test_an_exception_is_kept_in_the_one_line():
    try:
        raise ValueError("bad")
    except ValueError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = as_json(rec)
    assert "ValueError: bad" in line["exception"]


def settings_process(**env) -> subprocess.CompletedProcess:
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('integr8s.worker').info('run %s end', "
        "'0b7e5c6a-3f7d-4a8e-9d0c-5e1f2a3b4c5d')"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "integr8s.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("log_format", ["json", "JSON"])
def test_log_format_json_makes_the_settings_log_json(log_format):
    result = settings_process(LOG_FORMAT=log_format)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stderr.strip().splitlines()[-1])["execution_id"] == str(RUN)


def test_a_wrong_log_format_stops_the_start_naming_the_variable():
    result = settings_process(LOG_FORMAT="xml")
    assert result.returncode != 0
    assert "LOG_FORMAT='xml': expected text or json" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["json", "text"])
def test_the_web_server_s_own_lines_are_integr8s_lines_too(tmp_path, log_format):
    """The Dockerfile's command, the Deployment's and `make run`'s: gunicorn's arbiter logs its
    start, its workers and its stop before Django's settings configure logging; with
    LOG_FORMAT=json those lines were gunicorn's own text, which the log pipeline cannot read."""
    import signal
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "LOG_FORMAT": log_format,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "SECRET_KEY_FILE": str(tmp_path / "secret_key"),
        # Django's warning that collectstatic has not run (the image runs it) is not a log line.
        "PYTHONWARNINGS": "ignore::UserWarning",
    }
    gunicorn = Path(sys.executable).parent / "gunicorn"
    proc = subprocess.Popen(
        [gunicorn, "-c", "python:integr8s.gunicorn", "integr8s.asgi:application"]
        + [f"--bind=127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        time.sleep(1)  # its worker's start-up lines
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    lines = [line for line in out.splitlines() if line.strip()]
    assert any("Starting gunicorn" in line for line in lines), out
    for line in lines:
        if log_format == "json":
            event = json.loads(line)
            assert event["level"] and event["logger"], line
        else:
            assert line.split()[2] in ("INFO", "WARNING", "ERROR", "CRITICAL"), line
            assert not line.startswith("["), line

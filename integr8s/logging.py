"""One line per event from web and worker: readable text by default, one JSON object per line
with LOG_FORMAT=json (what a log pipeline reads: compose's and k8s/'s Alloy into Loki).

A line carries the execution id when its event is about one: given as
`extra={"execution_id": ...}`, else the first id among the message's arguments (the worker
logs `"run %s start ..."` with it; Django, a path with it), else, for a request, the one in
its path. Only the fields below are written, whatever else a record carries (Django's error
records carry the request): never a script, its input or its output. Request lines drop the
query string.
"""

import json
import logging
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
# The web servers' request loggers; their records are turned into method, path, status.
ACCESS_LOGGERS = ("gunicorn.access", "uvicorn.access")


def request_fields(record: logging.LogRecord) -> dict[str, Any] | None:
    """method, path (no query), status and, where the server says, duration and client."""
    args = record.args
    if record.name == "gunicorn.access" and isinstance(args, Mapping):
        # gunicorn's atoms: m method, U path, s status, M milliseconds, h remote address.
        fields: dict[str, Any] = {"method": args.get("m"), "path": args.get("U")}
        fields["status"] = _int(args.get("s"))
        fields["duration_ms"] = _int(args.get("M"))
        fields["client"] = args.get("h")
        return fields
    if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
        client, method, full_path, _, status = args
        return {
            "method": method,
            "path": str(full_path).partition("?")[0],
            "status": _int(status),
            "client": client,
        }
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def execution_id(record: logging.LogRecord, request: dict[str, Any] | None) -> str | None:
    given = getattr(record, "execution_id", None)
    if given:
        return str(given)
    if request is not None:
        found = UUID.search(str(request.get("path") or ""))
        return found.group().lower() if found else None
    args = record.args
    values = args.values() if isinstance(args, Mapping) else (args or ())
    for value in values:
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, str) and (found := UUID.search(value)):
            return found.group().lower()
    return None


class Formatter(logging.Formatter):
    """integr8s' log lines. `as_json=True`: {"time", "level", "logger", "message",
    "execution_id"?, "method"?, "path"?, "status"?, "duration_ms"?, "client"?, "exception"?}."""

    def __init__(self, as_json: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        request = request_fields(record)
        if request is not None:
            duration = request.get("duration_ms")
            message = f"{request['method']} {request['path']} {request['status']}"
            message += f" {duration}ms" if duration is not None else ""
        else:
            message = record.getMessage()
        run = execution_id(record, request)
        exception = self.formatException(record.exc_info) if record.exc_info else None
        if self.as_json:
            line: dict[str, Any] = {
                "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                    timespec="milliseconds"
                ),
                "level": record.levelname,
                "logger": record.name,
                "message": message,
            }
            if run:
                line["execution_id"] = run
            if request is not None:
                line.update({k: v for k, v in request.items() if v is not None})
            if exception:
                line["exception"] = exception
            return json.dumps(line, ensure_ascii=False, default=str)
        text = f"{self.formatTime(record)} {record.levelname} {record.name} {message}"
        if run and run not in message:
            text += f" execution_id={run}"
        if exception:
            text += "\n" + exception
        return text

"""How the web server serves, in one place: `manage.py serve` (make run), the Dockerfile and
the Kubernetes Deployment all start `gunicorn -c python:integr8s.gunicorn integr8s.asgi:application`
and give only the address to bind.

ASGI (uvicorn under gunicorn): wait=true and the events stream wait on the event loop, not in
a thread each. One process keeps /metrics (prometheus_client counts per process) whole; scale
with more containers or replicas.
"""

import os

worker_class = "uvicorn_worker.UvicornWorker"
workers = int(os.environ.get("WEB_PROCESSES", 1))
# A request's longest wait (wait=true: twice the longest wall time and its margin) is served on
# the event loop and does not count here; this is how long the loop may stall before the
# arbiter replaces the process.
timeout = 60
graceful_timeout = 20
# An idle keep-alive connection is held this long. Longer than a client or proxy waits before
# reusing one (Caddy's and nginx's upstream pools idle for up to 60 s or more; a Locust user
# waits 2-6 s): at gunicorn's default of 2 s the server closed connections just as clients sent
# their next request on them, and a POST on such a connection is lost ("connection closed"),
# because a client may not send a request that is not idempotent again.
keepalive = int(os.environ.get("WEB_KEEPALIVE_S", 75))
accesslog = "-"
# Who the client is, behind how many proxies, is decided in one place: BEHIND_PROXY
# (integr8s.throttling.client_ip). The server must not rewrite the peer address from
# X-Forwarded-For on its own (uvicorn does, for peers on loopback, by default).
forwarded_allow_ips = ""
# The arbiter's own lines (its start, its workers, signals) in integr8s' format, as LOG_FORMAT
# says (integr8s/logging.py): it logs before Django's settings configure logging, which they do
# again, the same way, in each worker process.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "integr8s": {
            "()": "integr8s.logging.Formatter",
            "as_json": os.environ.get("LOG_FORMAT", "text").lower() == "json",
        }
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "integr8s"}},
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        name: {"handlers": ["console"], "level": "INFO", "propagate": False}
        for name in ("gunicorn.error", "gunicorn.access")
    },
}

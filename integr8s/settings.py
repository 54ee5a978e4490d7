"""integr8s settings: one file, driven by environment variables.

Every default makes a fresh clone run on one machine (SQLite, the local sandbox) and is safe to
expose: DEBUG off, a secret key of its own generated at first start.
"""

import hashlib
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from executions.sandbox.local.uids import parse_range as parse_uid_range
from integr8s import secret_key

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={value!r}: expected true or false")


def env_number(name: str, default: float, minimum: float = 0, cast=int):
    """A number from the environment, or a start-up error that names the variable."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return cast(default)
    try:
        value = cast(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r}: expected a number") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r}: must be at least {minimum}")
    return value


# Off unless asked for (DEBUG=true): debug pages show code, settings and requests.
DEBUG = env_bool("DEBUG", False)
# From the environment, else from a file made at first start (mode 0600). Keys that were ever
# written in this repository are refused: anyone could sign sessions and tokens with them.
SECRET_KEY = secret_key.load(
    env("SECRET_KEY"), Path(env("SECRET_KEY_FILE", str(BASE_DIR / "var" / "secret_key")))
)
ALLOWED_HOSTS = env("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in env("CSRF_TRUSTED_ORIGINS").split(",") if o]
SITE_NAME = env("SITE_NAME", "integr8s")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_prometheus",
    "accounts",
    "executions",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After WhiteNoise: static files keep their own caching headers.
    "integr8s.middleware.SecurityHeadersMiddleware",
    "integr8s.middleware.RefuseNulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "integr8s.middleware.TooManyPasswordAttemptsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "integr8s.urls"
WSGI_APPLICATION = "integr8s.wsgi.application"
ASGI_APPLICATION = "integr8s.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite by default. WAL, a busy timeout and IMMEDIATE transactions let the web server and
# workers write the same file without "database is locked".
DATABASE_URL = env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Kept per thread (the web server's pool, the worker's threads): opening one, with its
    # functions and pragmas, cost a request about a millisecond.
    DATABASES["default"]["CONN_MAX_AGE"] = None
    # A file, not :memory:, so worker processes started by tests share the test database; one
    # per test run, so two runs at once (a developer's and CI's) never share one.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f"test-db-{os.getpid()}.sqlite3")}
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
# The web server's threads for synchronous views (integr8s/asgi.py); views that wait run on
# its event loop and hold none.
WEB_THREADS = env_number("WEB_THREADS", 16, 1)
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
    # A waiting (async) view's queries run in a thread of that request's own, so connections
    # kept per thread would be made anew each request. A pool keeps them instead, with room
    # for every web thread and the waits besides.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": env_number("DATABASE_POOL_SIZE", WEB_THREADS + 8, 2),
        "timeout": 10,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
# Every password presented (site, admin, API) goes through this backend, which counts it.
AUTHENTICATION_BACKENDS = ["accounts.backends.PasswordBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "editor"
LOGOUT_REDIRECT_URL = "editor"
PASSWORD_RESET_TIMEOUT = env_number("PASSWORD_RESET_TIMEOUT_S", 3 * 3600, 60)

# E-mail (password reset). The console backend prints messages to the web server's output;
# set EMAIL_HOST (and the rest) to send them through an SMTP server.
MAILERS: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}
}
if env("EMAIL_HOST"):
    _email_port = env_number("EMAIL_PORT", 587, 1)
    MAILERS["default"] = {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": env("EMAIL_HOST"),
            "port": _email_port,
            "username": env("EMAIL_HOST_USER"),
            "password": env("EMAIL_HOST_PASSWORD"),
            # STARTTLS on the submission port, TLS from the start on 465.
            "use_tls": env_bool("EMAIL_USE_TLS", _email_port == 587),
            "use_ssl": env_bool("EMAIL_USE_SSL", _email_port == 465),
            "timeout": 10,
        },
    }
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "integr8s <noreply@localhost>")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# Output files of runs, through Django's storage API: the file system by default (under var/,
# which only the app reads); an S3-compatible store with django-storages in production.
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
FILES_RETENTION_DAYS = env_number("FILES_RETENTION_DAYS", 30, 1)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Security headers. The CSP allows no inline script; HTMX and the editor load from /static/.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
HTTPS = env_bool("HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
SESSION_ENGINE = "integr8s.sessions"
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Browsers that saw the site over HTTPS refuse plain HTTP to it for this long.
SECURE_HSTS_SECONDS = env_number("HSTS_SECONDS", 365 * 86400, 0) if HTTPS else 0
# Powerful browser features the site never uses, off for it and anything it could embed.
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), display-capture=(), geolocation=(), gyroscope=(), "
    "magnetometer=(), microphone=(), midi=(), payment=(), usb=()"
)


def proxies() -> int:
    """BEHIND_PROXY: how many proxies in front of the site append to X-Forwarded-For (0: none;
    true means 1). The client's address is counted that many entries from the right."""
    raw = env("BEHIND_PROXY").strip().lower()
    if raw in ("", "false", "no", "off"):
        return 0
    if raw in ("true", "yes", "on"):
        return 1
    return env_number("BEHIND_PROXY", 0, 0)


TRUSTED_PROXIES = proxies()
if TRUSTED_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# A bearer token for /metrics; without one, /metrics answers loopback clients only.
METRICS_TOKEN = env("METRICS_TOKEN")
# Debug pages (DEBUG=true) hide settings and request headers that may carry credentials.
DEFAULT_EXCEPTION_REPORTER_FILTER = "integr8s.middleware.ExceptionReporterFilter"
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
    "base-uri": ["'self'"],
    "object-src": ["'none'"],
}

DATA_UPLOAD_MAX_MEMORY_SIZE = 512 * 1024  # a body of two full 64 KiB fields fits with room

# --- Execution -----------------------------------------------------------------------------

EXECUTION_BACKEND = env("EXECUTION_BACKEND", "local")
if EXECUTION_BACKEND not in ("local", "kubernetes"):
    raise ImproperlyConfigured(
        f"EXECUTION_BACKEND={EXECUTION_BACKEND!r}: expected local or kubernetes"
    )

# "3.12=/path/to/python3.12,3.9=/path/to/python3.9" replaces interpreter discovery.
INTEGR8S_RUNTIMES = env("INTEGR8S_RUNTIMES")
# Kubernetes images per version, "3.12=python:3.12-slim,..."; unlisted versions use the default.
K8S_IMAGES = env("K8S_IMAGES")
K8S_VERSIONS = env("K8S_VERSIONS", "3.9,3.10,3.11,3.12,3.13")

# The limits in force; executions/limits.py turns these into a Limits object.
LIMITS = {
    "wall_time_s": env_number("LIMIT_WALL_TIME_S", 5, 0.1, float),
    "cpu_time_s": env_number("LIMIT_CPU_TIME_S", 5, 0.1, float),
    "memory_mb": env_number("LIMIT_MEMORY_MB", 128, 16),
    "processes": env_number("LIMIT_PROCESSES", 64, 1),
    "tmp_mb": env_number("LIMIT_TMP_MB", 16, 1),
    "output_kb": env_number("LIMIT_OUTPUT_KB", 1024, 1),
    "script_kb": env_number("LIMIT_SCRIPT_KB", 64, 1),
    "stdin_kb": env_number("LIMIT_STDIN_KB", 64, 0),
    "output_files": env_number("LIMIT_OUTPUT_FILES", 20, 0),
    "files_mb": env_number("LIMIT_OUTPUT_FILES_MB", 8, 0),
    "input_files": env_number("LIMIT_INPUT_FILES", 10, 0),  # read-only in /tmp/inputs
    "input_files_kb": env_number("LIMIT_INPUT_FILES_KB", 512, 0),  # their size together
    "cpu_request": env("K8S_CPU_REQUEST", "100m"),
    "cpu_limit": env("K8S_CPU_LIMIT", "1000m"),
}
# The most a request may ask for (API `limits`, the editor); the defaults above must fit.
LIMIT_MAXIMA = {
    "memory_mb": env_number("LIMIT_MAX_MEMORY_MB", 512, 16),
    "wall_time_s": env_number("LIMIT_MAX_WALL_TIME_S", 30, 0.1, float),
    "cpu_time_s": env_number("LIMIT_MAX_CPU_TIME_S", 30, 0.1, float),
    "output_kb": env_number("LIMIT_MAX_OUTPUT_KB", 4096, 1),
}
for _name, _maximum in LIMIT_MAXIMA.items():
    if LIMITS[_name] > _maximum:
        raise ImproperlyConfigured(
            f"LIMIT_{_name.upper()}={LIMITS[_name]:g} is above LIMIT_MAX_{_name.upper()}="
            f"{_maximum:g}: a default must be within its maximum."
        )
# A JSON submission carries its input files in base64 (4 bytes for every 3): room for them.
DATA_UPLOAD_MAX_MEMORY_SIZE += (
    4 * 1024 * LIMITS["input_files_kb"] // 3 + 1024 * LIMITS["input_files"]
)

# This installation's name: its run cgroups (and pods) carry it, and start-up clean-up touches
# only what carries it. Two installations on one host (two checkouts, or one site and its
# tests) must differ: the default is made from this checkout's path and its database.
SANDBOX_NAME = env(
    "SANDBOX_NAME",
    "integr8s-" + hashlib.sha256(f"{BASE_DIR}|{DATABASE_URL}".encode()).hexdigest()[:8],
)
# When the worker runs as root, each sandbox runs as an unprivileged host uid of its own from
# this range (kernel quotas kept per uid are then per run); every worker on the host shares it.
SANDBOX_HOST_UIDS = env("SANDBOX_HOST_UIDS", "600000-600999")
# At most this many sandboxes run at once on this host, across all its workers (0: one per CPU
# the worker may use). More would only share the cores and blur the wall clock.
SANDBOX_SLOTS = env_number("SANDBOX_SLOTS", 0, 0)
try:
    parse_uid_range(SANDBOX_HOST_UIDS)
except ValueError as exc:
    raise ImproperlyConfigured(f"SANDBOX_HOST_UIDS: {exc}") from None

# Kubernetes backend.
K8S_NAMESPACE = env("K8S_NAMESPACE", "integr8s-executions")
K8S_RUNTIME_CLASS = env("K8S_RUNTIME_CLASS")
K8S_NODE_SELECTOR = env("K8S_NODE_SELECTOR")  # "key=value,key2=value2"
K8S_TOLERATIONS = env("K8S_TOLERATIONS")  # JSON list of tolerations
K8S_START_TIMEOUT_S = env_number("K8S_START_TIMEOUT_S", 60, 1, float)
K8S_HOST_USERS = env_bool("K8S_HOST_USERS", True)

# Worker and queue.
WORKER_CONCURRENCY = env_number("WORKER_CONCURRENCY", 2, 1)
WORKER_LEASE_S = env_number("WORKER_LEASE_S", 15, 1, float)
WORKER_POLL_S = env_number("WORKER_POLL_S", 0.05, 0.005, float)
WORKER_MAX_ATTEMPTS = env_number("WORKER_MAX_ATTEMPTS", 2, 1)

# API limits: submissions per minute and executions waiting or running per caller.
THROTTLE_ANON = env("THROTTLE_ANON", "30/min")
THROTTLE_USER = env("THROTTLE_USER", "120/min")
# Anonymous callers are counted per address: an IPv4 address, or an IPv6 address's /64.
THROTTLE_SIGNUP = env("THROTTLE_SIGNUP", "10/hour")  # new accounts per address
THROTTLE_LOGIN = env("THROTTLE_LOGIN", "20/min")  # password attempts per address
MAX_ACTIVE_PER_CALLER = env_number("MAX_ACTIVE_PER_CALLER", 10, 1)
# Backpressure: past this many queued runs (all callers), submissions get 503 and Retry-After.
MAX_QUEUED = env_number("MAX_QUEUED", 500, 1)
# What one account keeps: saved scripts (each a script and a stdin) and API keys.
MAX_SAVED_SCRIPTS = env_number("MAX_SAVED_SCRIPTS", 500, 1)
MAX_API_KEYS = env_number("MAX_API_KEYS", 20, 1)
# An Idempotency-Key answers with its first execution for this long, then may be used again.
IDEMPOTENCY_KEY_HOURS = env_number("IDEMPOTENCY_KEY_HOURS", 24, 0.01, float)
WAIT_MARGIN_S = env_number("WAIT_MARGIN_S", 10, 0, float)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "integr8s.api.exception_handler",
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_number("JWT_ACCESS_MINUTES", 30, 1)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_number("JWT_REFRESH_DAYS", 7, 1)),
    # A refresh token is good for one refresh: it answers with a new one and is blacklisted.
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    # Tokens carry a digest of the password hash: a new password ends every earlier token.
    "CHECK_REVOKE_TOKEN": True,
    "UPDATE_LAST_LOGIN": False,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "integr8s API",
    "DESCRIPTION": "Run Python scripts in isolated, resource-limited sandboxes.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and ReDoc served from the app (the CSP allows no CDN).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if env("CACHE_URL"):
    CACHES["default"] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env("CACHE_URL"),
    }

PROMETHEUS_EXPORT_MIGRATIONS = False

# One line per event, with the execution id where there is one (integr8s/logging.py): readable
# text, or JSON for a log pipeline. The web server's request lines go the same way, once.
LOG_FORMAT = env("LOG_FORMAT", "text").lower()
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: expected text or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {"()": "integr8s.logging.Formatter", "as_json": LOG_FORMAT == "json"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "default"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "django.request": {"level": "ERROR"},  # a 4xx is its request line; a 5xx, a traceback
        **{
            name: {"handlers": ["console"], "level": "INFO", "propagate": False}
            for name in ("gunicorn.access", "gunicorn.error", "uvicorn.access", "uvicorn.error")
        },
    },
}

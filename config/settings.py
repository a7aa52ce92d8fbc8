"""Settings: the only module that reads the environment.

Every variable is listed in README's configuration table. Secrets may come from
``<NAME>_FILE`` (a path whose content is the value), so they need not sit in the process
environment of a container orchestrator's spec.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("EVERESTHOOD_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)  # SQLite files, broker, logs: git-ignored

env = environ.Env()

# `make run` writes a development-only file (git-ignored) with a generated SECRET_KEY and
# credential key. Variables already in the environment win over it.
ENV_FILE = os.environ.get("EVERESTHOOD_ENV_FILE", str(VAR_DIR / "dev.env"))
if ENV_FILE and Path(ENV_FILE).is_file():
    environ.Env.read_env(ENV_FILE, overwrite=False)


def _secret_from_env(name: str) -> str | None:
    """Value of NAME, or the content of the file named by NAME_FILE."""
    value = os.environ.get(name)
    file_name = os.environ.get(f"{name}_FILE")
    if value is not None and file_name:
        raise ImproperlyConfigured(f"Set either {name} or {name}_FILE, not both.")
    if file_name:
        try:
            return Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"{name}_FILE points to a file that cannot be read ({exc.strerror})."
            ) from None
    return value


DEBUG = env.bool("DEBUG", default=False)

_secret_key = _secret_from_env("SECRET_KEY")
# Without a configured SECRET_KEY the process gets a random one: sessions then do not survive a
# restart or span processes, and the startup check refuses this when DEBUG is off.
SECRET_KEY_IS_GENERATED = not _secret_key
SECRET_KEY = _secret_key or secrets.token_urlsafe(50)

ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Credential keys -----------------------------------------------------------------------
# Every AGENT_CREDENTIAL_KEY_* variable (or its _FILE form) is collected here by name; the
# keyring in credentials.crypto validates names and values and reports errors by variable name.
CREDENTIAL_KEY_PREFIX = "AGENT_CREDENTIAL_KEY_"
CREDENTIAL_KEYS: dict[str, str] = {}
for _name in sorted(os.environ):
    if not _name.startswith(CREDENTIAL_KEY_PREFIX):
        continue
    _base = _name.removesuffix("_FILE")
    if _base in CREDENTIAL_KEYS:
        continue
    _value = _secret_from_env(_base)
    if _value is not None:
        CREDENTIAL_KEYS[_base] = _value
AGENT_CREDENTIAL_ACTIVE_KEY: str | None = env.str("AGENT_CREDENTIAL_ACTIVE_KEY", default=None)
# KMS-held KEKs by key id, comma-separated: aws-kms:<KeyId|ARN|alias/name>,
# gcp-kms:projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>. The KMS clients take their
# credentials from the SDKs' own chains (AWS_* variables or roles; Application Default
# Credentials), never from here.
AGENT_CREDENTIAL_KMS_KEYS: str = env.str("AGENT_CREDENTIAL_KMS_KEYS", default="")
AWS_KMS_ENDPOINT_URL: str | None = env.str("AWS_KMS_ENDPOINT_URL", default=None)
AWS_KMS_REGION: str | None = env.str("AWS_KMS_REGION", default=None)
GCP_KMS_ENDPOINT_URL: str | None = env.str("GCP_KMS_ENDPOINT_URL", default=None)
# For emulators and tests only: send no credentials to GCP_KMS_ENDPOINT_URL.
GCP_KMS_ANONYMOUS_CREDENTIALS = env.bool("GCP_KMS_ANONYMOUS_CREDENTIALS", default=False)
# Per attempt (connect and read), and attempts per KMS call including the first: a run whose
# key service is down fails after a few seconds instead of retrying for a minute.
CREDENTIAL_KMS_TIMEOUT_SECONDS = env.float("CREDENTIAL_KMS_TIMEOUT_SECONDS", default=5.0)
CREDENTIAL_KMS_MAX_ATTEMPTS = env.int("CREDENTIAL_KMS_MAX_ATTEMPTS", default=3)
# Wraps under one local KEK (random 96-bit nonces) before the startup check warns to rotate:
# NIST SP 800-38D caps a key at 2^32 random-nonce encryptions; 2^30 keeps a 4x margin.
CREDENTIAL_KEY_WRAP_WARNING_THRESHOLD = env.int(
    "CREDENTIAL_KEY_WRAP_WARNING_THRESHOLD", default=2**30
)
# Largest secret accepted, in UTF-8 bytes: a 4096-bit PEM private key is ~3.3 KiB.
CREDENTIAL_MAX_SECRET_BYTES = env.int("CREDENTIAL_MAX_SECRET_BYTES", default=16384)

# --- Applications ----------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "django_prometheus",
    "csp",
    "config.apps.ConfigAppConfig",
    "orgs",
    "audit",
    "credentials",
    "agents",
    "incidents",
]

# RequestContextMiddleware comes first: the requestId must already be bound when the tracing
# middleware (inserted right after it by config.telemetry) starts the request span, which
# takes it as an attribute, and when the metrics middleware runs.
MIDDLEWARE = [
    "config.middleware.RequestContextMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.middleware.RequestUserContextMiddleware",
    "config.middleware.SignedInPagesNotCachedMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# django-guardian: no anonymous user object (nothing is granted to anonymous visitors).
ANONYMOUS_USER_NAME = None

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]

# --- Database ----------------------------------------------------------------------------------
# Embedded default: SQLite in var/. WAL lets the web process read while the worker writes;
# IMMEDIATE transactions take the write lock up front instead of failing on upgrade.
SQLITE_PATH = VAR_DIR / "everesthood.sqlite3"
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{SQLITE_PATH}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # Tests need a file, not :memory:, so the Celery worker process sees the same database.
    DATABASES["default"]["TEST"] = {
        "NAME": env.str("SQLITE_TEST_PATH", default=str(VAR_DIR / "test-everesthood.sqlite3"))
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend, sending each transaction's BEGIN, and writes nobody reads back, in the
    # round trip of the next statement or of the COMMIT (config/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "config.postgresql"
# Keep connections for a while instead of opening one per request or task (a PostgreSQL connect
# with Django's setup costs ~7 ms here), and check a kept one before reusing it, so a database
# restart costs one reconnect instead of failed requests. (Workers swap this check for one
# without a round trip: config.celery.)
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Shared cache: throttling counters (failed token authentications). Per process by default;
# set CACHE_URL (e.g. redis://127.0.0.1:6379/1) so several web processes count together.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

# --- Auth, sessions, security ----------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "ui:home"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
# The CSRF token travels in forms, never read by script: the cookie need not be readable.
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
# Behind a TLS-terminating proxy in production: HSTS and the header that says "this was HTTPS".
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
if env.bool("SECURE_PROXY_SSL", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Content-Security-Policy (django-csp): no inline script or style anywhere, no framing, no
# plugin content, forms post only to us. Every page's script is a static file of ours.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# --- REST API ----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: an unauthenticated call then gets 401 with `WWW-Authenticate: Bearer`.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "agents.authentication.VaultTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "orgs.api_permissions.AgentTokenScope",
    ],
    "DEFAULT_THROTTLE_RATES": {
        # Failed token authentications per client address (agents.authentication).
        "token_failure": env.str("API_TOKEN_FAILURE_RATE", default="20/min"),
        # Failed sign-ins per client address (the login pages, orgs.views.throttle_sign_ins).
        "login_failure": env.str("LOGIN_FAILURE_RATE", default="10/min"),
    },
    # Proxies in front of the web that append to X-Forwarded-For. DRF's default (None) takes
    # the header as the client wrote it, so a forged value per guess escaped the throttle.
    "NUM_PROXIES": env.int("API_NUM_PROXIES", default=0),
    "DEFAULT_PARSER_CLASSES": [
        "config.parsers.VaultJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "config.renderers.WriteOnlyBrowsableAPIRenderer",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Everesthood credential vault API",
    "DESCRIPTION": (
        "Write-only credential storage for AI agents. Secrets go in; they never come out."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Celery --------------------------------------------------------------------------------------
# Embedded default: kombu's SQLAlchemy transport on a SQLite file, so `make run` needs nothing
# installed. Production: Redis or RabbitMQ.
CELERY_BROKER_URL = env.str(
    "CELERY_BROKER_URL", default=f"sqla+sqlite:///{VAR_DIR / 'celery-broker.sqlite3'}"
)
EMBEDDED_BROKER = CELERY_BROKER_URL.startswith("sqla+")
_default_result_backend = (
    f"db+sqlite:///{VAR_DIR / 'celery-results.sqlite3'}"
    if EMBEDDED_BROKER
    else CELERY_BROKER_URL
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
    else "rpc://"
)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=_default_result_backend)
# Seconds between polls of the embedded broker (kombu's default is 1 s: ~1 s per round trip).
CELERY_BROKER_POLLING_INTERVAL = env.float("CELERY_BROKER_POLLING_INTERVAL", default=0.02)
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = (
    # SQLite waits for a lock instead of failing when web and worker write at once.
    {"connect_args": {"timeout": 30}} if CELERY_BROKER_URL.startswith("sqla+sqlite") else {}
)
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="everesthood")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_RESULT_EXPIRES = 3600
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_REDIRECT_STDOUTS = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
# Celery's Django fixup closes every database connection before and after each task unless this
# is set, so each run on PostgreSQL would open a new connection. With it, connections are
# recycled every 2 x N task boundaries, and config.celery applies Django's own per-request check
# (close_old_connections: CONN_MAX_AGE and broken connections) around every task.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=100)

# --- Agents --------------------------------------------------------------------------------
AGENT_HTTP_TIMEOUT_SECONDS = env.float("AGENT_HTTP_TIMEOUT_SECONDS", default=15.0)
AGENT_HTTP_MAX_BODY_BYTES = env.int("AGENT_HTTP_MAX_BODY_BYTES", default=4096)

# --- Email (breach notifications) ------------------------------------------------------------
# EMAIL_URL in django-environ's form: smtp+tls://user:password@host:587, consolemail://,
# filemail:///path/to/dir. Development prints mails to the console.
_email = env.email_url("EMAIL_URL", default="consolemail://" if DEBUG else "smtp://localhost:25")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST", "")
EMAIL_PORT = _email.get("EMAIL_PORT", 25)
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _secret_from_env("EMAIL_HOST_PASSWORD") or _email.get(
    "EMAIL_HOST_PASSWORD", ""
)
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
if "EMAIL_FILE_PATH" in _email:
    EMAIL_FILE_PATH = _email["EMAIL_FILE_PATH"]
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="vault@localhost")
# Where the vault's pages are, for links in mails (e.g. https://vault.example.com).
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

# --- Logging -------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# Optional second destination (JSON lines, appended): `make run` sets var/log/everesthood.jsonl
# so `manage.py demo` can show a run's worker lines.
LOG_FILE: str | None = env.str("LOG_FILE", default=None)
# Django calls LOGGING_CONFIG with LOGGING, and only when LOGGING is not empty.
LOGGING_CONFIG = "config.logging.configure_logging"
LOGGING: dict[str, Any] = {"level": LOG_LEVEL, "file": LOG_FILE}

# --- Tracing (OpenTelemetry) -------------------------------------------------------------------
# The standard variables: OTEL_TRACES_EXPORTER picks the exporter (otlp, console or none);
# the OTLP exporter reads OTEL_EXPORTER_OTLP_ENDPOINT / _HEADERS / _TIMEOUT itself, the SDK
# reads OTEL_TRACES_SAMPLER, OTEL_BSP_* and OTEL_RESOURCE_ATTRIBUTES. config.telemetry checks
# the names at startup.
OTEL_TRACES_EXPORTER: list[str] = env.list("OTEL_TRACES_EXPORTER", default=["none"])
OTEL_EXPORTER_OTLP_PROTOCOL = env.str("OTEL_EXPORTER_OTLP_PROTOCOL", default="http/protobuf")
# Default: everesthood-web or everesthood-worker, by process role.
OTEL_SERVICE_NAME: str | None = env.str("OTEL_SERVICE_NAME", default=None)

# --- Metrics (Prometheus) ----------------------------------------------------------------------
# Bearer token that may read /api/metrics (staff sessions may too). Unset: only staff.
METRICS_TOKEN: str | None = _secret_from_env("METRICS_TOKEN") or None
# Every web and worker process of a host writes its samples here and /api/metrics adds them
# up (prometheus_client's multiprocess mode), so one scrape shows the workers too. It must be
# emptied before the first process of the host starts (`make run` and `make test` do).
# prometheus_client reads only the environment, and decides when it is first imported (as
# django_prometheus loads, after these settings): hence the write-back. Empty: single-process
# mode (this process's own samples only).
PROMETHEUS_MULTIPROC_DIR: str = env.str(
    "PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "prometheus")
)
if PROMETHEUS_MULTIPROC_DIR:
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR
else:
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

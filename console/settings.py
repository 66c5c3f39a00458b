"""Tenure settings, read from the environment (12-factor).

With no environment at all, Tenure runs embedded: SQLite and a filesystem
Celery broker under ``data/``. Set ``DATABASE_URL`` and ``REDIS_URL`` for a
real deployment (PostgreSQL and Redis).
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import dj_database_url
from django.utils.csp import CSP

from console.ops.beat import BEAT_SCHEDULE
from console.ops.logging import build_logging

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("TENURE_DATA_DIR", BASE_DIR / "data"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _embedded_secret_key() -> str:
    """A per-install key kept under data/, so the embedded console needs no setup."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(64))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY") or _embedded_secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_htmx",
    "guardian",
    "axes",
    # The layers, lowest first: governance <- agents <- reviews <- evidence; the demo
    # and the project (console) on top.
    "governance",
    "agents",
    "reviews",
    "evidence",
    "demo",
    "console",
]

MIDDLEWARE = [
    "console.ops.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    # Django's, confirming a session served from the cache against its row.
    "console.middleware.AuthenticationMiddleware",
    "console.middleware.NoStoreForSignedInMiddleware",
    "console.middleware.RefuseNulInAddressMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as axes asks: turns a refused sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "console.urls"
WSGI_APPLICATION = "console.wsgi.application"

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
                "django.template.context_processors.csp",
                "console.context_processors.navigation",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
_embedded_db = f"sqlite:///{DATA_DIR / 'tenure.sqlite3'}"
DATABASE_URL = os.environ.get("DATABASE_URL") or _embedded_db
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        # The web server and the worker write to one file: WAL lets readers
        # through, IMMEDIATE takes the write lock up front instead of failing
        # half way through a transaction, and the timeout waits out the other writer.
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Prepared statements (psycopg prepares a statement after this many runs on a
    # connection). Off by default: it breaks behind PgBouncer in transaction mode.
    # Turn it on (e.g. 5) with direct connections to PostgreSQL: see the README.
    _prepare = os.environ.get("DATABASE_PREPARE_THRESHOLD", "").strip()
    if _prepare:
        DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = int(_prepare)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache and Celery ----------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "tenure"),
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    # A task whose worker died unacknowledged (acks_late) is redelivered after this;
    # longer than the longest task, shorter than Redis's default hour.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "600"))
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    }
    # Celery's filesystem transport: a real broker with nothing to install.
    CELERY_BROKER_URL = "filesystem://"
    _broker_dir = DATA_DIR / "broker"
    for sub in ("out", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # The worker looks for new task files this often (seconds).
        "polling_interval": 0.2,
    }

CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "tenure")
# Agent runs wait on the model for seconds: with TENURE_RUNS_QUEUE set they go to
# that queue, served by a threaded worker (`celery worker --pool=threads -Q <it>`)
# that keeps hundreds in flight; empty, they share the default queue.
TENURE_RUNS_QUEUE = os.environ.get("TENURE_RUNS_QUEUE", "")
if TENURE_RUNS_QUEUE:
    CELERY_TASK_ROUTES = {"agents.run_agent": {"queue": TENURE_RUNS_QUEUE}}
# Task modules beyond each app's tasks.py.
CELERY_IMPORTS = [
    "agents.maintenance",
    "agents.notifications",
    "agents.otel",
    "governance.notifications",
]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = int(os.environ.get("CELERY_TASK_TIME_LIMIT", "300"))
CELERY_TASK_SOFT_TIME_LIMIT = int(os.environ.get("CELERY_TASK_SOFT_TIME_LIMIT", "240"))
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = dict(BEAT_SCHEDULE)
# The embedded demo (`make run`) keeps receiving work: one item per workflow a minute.
if env_bool("TENURE_DEMO_FEED", False):
    CELERY_BEAT_SCHEDULE["demo-feed"] = {
        "task": "demo.feed",
        "schedule": 60.0,
        "options": {"expires": 50},
    }

# --- Auth -----------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    # First: a locked-out username and address are refused before any password check.
    "console.login.LoginThrottleBackend",
    "console.backends.ModelBackend",  # django's, with the session's user read faster
    "guardian.backends.ObjectPermissionBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
GUARDIAN_RAISE_403 = True
# Sign-in throttling (django-axes, console/login.py): after this many failed password
# sign-ins for one username from one address, that pair is locked out for the cool-off;
# a success resets the count. Failures and lockouts go to the audit log.
AXES_FAILURE_LIMIT = int(os.environ.get("TENURE_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("TENURE_LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# A refused attempt during a lockout does not extend it: the page can say when it ends.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "console.login.lockout_response"
AXES_WHITELIST_CALLABLE = "console.login.not_a_password_login"
AXES_USERNAME_CALLABLE = "console.login.attempted_username"
# The audit log is the record of sign-ins; axes keeps only its counters.
AXES_DISABLE_ACCESS_LOG = True
# Behind a reverse proxy, the client's address is in X-Forwarded-For: set how many
# proxies append to it (their own entries are skipped). Unset: the socket's address.
_proxy_count = os.environ.get("TENURE_PROXY_COUNT", "").strip()
if _proxy_count:
    AXES_IPWARE_PROXY_COUNT = int(_proxy_count)
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
ANONYMOUS_USER_NAME = None

# --- Security ---------------------------------------------------------------
# HTTPS is assumed whenever DEBUG is off; the embedded console on plain
# http://127.0.0.1 turns it off explicitly with TENURE_HTTPS=0.
HTTPS = env_bool("TENURE_HTTPS", not DEBUG)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS and env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000")) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("TRUST_X_FORWARDED_PROTO", False) else None
)
# Plain-HTTP probes from the orchestrator must not be redirected to HTTPS.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = 60 * 60 * 12
# Every request reads the session: with Redis, read it from the cache (written
# through to the database, so a cache flush logs nobody out, and read from the
# database while Redis is down: console/sessions.py).
if REDIS_URL:
    SESSION_ENGINE = "console.sessions"
CSRF_COOKIE_HTTPONLY = False  # htmx reads no cookie: the token travels in hx-headers.
X_FRAME_OPTIONS = "DENY"
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

# --- I18N, static ---------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise serves from finders too
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Logging ----------------------------------------------------------------
# JSON lines with request and run ids in production; plain text with DEBUG on.
LOGGING = build_logging(
    level=os.environ.get("LOG_LEVEL", "INFO"), json=env_bool("LOG_JSON", not DEBUG)
)
# The filesystem broker has no host; kombu warns about it on every connection.
LOGGING.setdefault("loggers", {})["kombu.connection"] = {"level": "ERROR"}
# axes narrates every sign-in at INFO; its warnings (failures, lockouts) are kept.
LOGGING["loggers"]["axes"] = {"level": "WARNING"}

# --- Tenure ---------------------------------------------------------------
# Reviewer time is part of the cost of an outcome.
TENURE_REVIEWER_HOURLY_RATE = Decimal(os.environ.get("TENURE_REVIEWER_HOURLY_RATE", "45.00"))
# Audit events commit with their change; their place in the hash chain is sealed
# after the commit: "background" (a sealer thread per process, off the request
# path, a burst sealed at once) or "commit" (in the committing thread).
TENURE_AUDIT_SEAL = os.environ.get("TENURE_AUDIT_SEAL", "background")
# The audit chain's HMAC keys, held outside the database ("id:base64key,..."), and the
# one new events are sealed with; empty: one key generated into data/audit_keys.
TENURE_AUDIT_KEYS = os.environ.get("TENURE_AUDIT_KEYS", "")
TENURE_AUDIT_KEY_ID = os.environ.get("TENURE_AUDIT_KEY_ID", "")
# The master key that wraps each data subject's key (governance.privacy), base64 of 32
# bytes, held outside the database; empty: one key generated into data/privacy_key.
TENURE_PRIVACY_KEY = os.environ.get("TENURE_PRIVACY_KEY", "")
# Where the chains' heads are checkpointed, outside the database: "dir:/path" (an
# append-only directory; default data/audit-checkpoints) or "s3://bucket/prefix" (a
# bucket with object lock; TENURE_AUDIT_S3_ENDPOINT for a non-AWS one).
TENURE_AUDIT_CHECKPOINTS = os.environ.get("TENURE_AUDIT_CHECKPOINTS", "")
TENURE_AUDIT_S3_ENDPOINT = os.environ.get("TENURE_AUDIT_S3_ENDPOINT", "")
# The database role the app runs as in production (it owns no table; the owner runs
# migrations and then `manage.py db_app_role`, which reads these).
TENURE_APP_DB_ROLE = os.environ.get("TENURE_APP_DB_ROLE", "tenure_app")
TENURE_APP_DB_PASSWORD = os.environ.get("TENURE_APP_DB_PASSWORD", "")
TENURE_AUDIT_CHECKPOINT_RETAIN_DAYS = int(
    os.environ.get("TENURE_AUDIT_CHECKPOINT_RETAIN_DAYS", "400")
)
TENURE_CLAIM_LEASE_SECONDS = int(os.environ.get("TENURE_CLAIM_LEASE_SECONDS", "300"))
# An OpenAI-compatible endpoint; with no key, the built-in demo model runs.
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "")
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
# The built-in demo model's client (models named demo-*); the runtime imports it by name.
TENURE_DEMO_MODEL_CLIENT = os.environ.get("TENURE_DEMO_MODEL_CLIENT", "demo.model.DemoModelClient")
TENURE_MODEL_SMALL = os.environ.get("TENURE_MODEL_SMALL", "gpt-4o-mini")
TENURE_MODEL_LARGE = os.environ.get("TENURE_MODEL_LARGE", "gpt-4o")
# Model prices, USD per million tokens (input, cached input, output): they seed the
# price table (governance.ModelPrice), which admins change under change control.
TENURE_MODEL_PRICES = {
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.075"), Decimal("0.60")),
    "gpt-4o": (Decimal("2.50"), Decimal("1.25"), Decimal("10.00")),
    "demo-small": (Decimal("0.15"), Decimal("0.075"), Decimal("0.60")),
    "demo-large": (Decimal("2.50"), Decimal("1.25"), Decimal("10.00")),
}
# The price of a model the table does not list, "input,cached,output" USD per million
# tokens; empty: a run on an unpriced model stops (its cost cannot be budgeted).
TENURE_FALLBACK_PRICE = os.environ.get("TENURE_FALLBACK_PRICE", "")
# Limits on runs in flight (agents/throttle.py): runs per workflow at once (0: none),
# the model endpoint's requests and tokens a minute (0: none), and how many threads of
# one worker process hold a database connection at once (0: each keeps its own; the
# threaded runs worker sets it).
TENURE_WORKFLOW_MAX_RUNS = int(os.environ.get("TENURE_WORKFLOW_MAX_RUNS", "200"))
TENURE_MODEL_RPM = int(os.environ.get("TENURE_MODEL_RPM", "0"))
TENURE_MODEL_TPM = int(os.environ.get("TENURE_MODEL_TPM", "0"))
TENURE_RUN_DB_CONNECTIONS = int(os.environ.get("TENURE_RUN_DB_CONNECTIONS", "0"))
# Bearer token Prometheus presents to scrape /metrics (unset: loopback only).
TENURE_METRICS_TOKEN = os.environ.get("TENURE_METRICS_TOKEN", "")
TENURE_API_MAX_BODY_BYTES = int(os.environ.get("TENURE_API_MAX_BODY_BYTES", str(1024 * 1024)))
# What one work item's payload may be (API, batches, history imports): its JSON size,
# how deep it nests, and how many keys an object and items a list may hold. Refused
# with a 422 naming the limit and where it was hit (agents.services.payload_check).
TENURE_PAYLOAD_MAX_BYTES = int(os.environ.get("TENURE_PAYLOAD_MAX_BYTES", str(64 * 1024)))
TENURE_PAYLOAD_MAX_DEPTH = int(os.environ.get("TENURE_PAYLOAD_MAX_DEPTH", "32"))
TENURE_PAYLOAD_MAX_KEYS = int(os.environ.get("TENURE_PAYLOAD_MAX_KEYS", "1000"))
TENURE_PAYLOAD_MAX_ITEMS = int(os.environ.get("TENURE_PAYLOAD_MAX_ITEMS", "10000"))
# How many times a run is started (its first start, then each retry after a crash or
# a lost worker) before it ends as an escalation with the error ("dead letter").
TENURE_RUN_MAX_ATTEMPTS = max(1, int(os.environ.get("TENURE_RUN_MAX_ATTEMPTS", "3")))
# The gate for outside agents: hosts a call's callback URL may name (comma-separated),
# and the secret its HMAC signature uses (defaults to SECRET_KEY).
TENURE_GATE_CALLBACK_HOSTS = [
    h.strip() for h in os.environ.get("TENURE_GATE_CALLBACK_HOSTS", "").split(",") if h.strip()
]
TENURE_GATE_CALLBACK_SECRET = os.environ.get("TENURE_GATE_CALLBACK_SECRET", "")
# The readiness check fails when no worker has reported for this many seconds.
TENURE_HEARTBEAT_MAX_AGE = int(os.environ.get("TENURE_HEARTBEAT_MAX_AGE", "120"))
# Extra policy checks for every workflow (dotted paths), e.g. an external guardrail.
TENURE_POLICY_CHECKS: list[str] = []
# Key for encrypting connector credentials at rest (Fernet); derived from SECRET_KEY if unset.
TENURE_CREDENTIALS_KEY = os.environ.get("TENURE_CREDENTIALS_KEY", "")

# --- Single sign-on (OIDC) --------------------------------------------------
# Off unless OIDC_RP_CLIENT_ID and the provider (discovery URL, or the four
# endpoints) are set; local accounts keep working either way. See console/sso.py.
OIDC_RP_CLIENT_ID = os.environ.get("OIDC_RP_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = os.environ.get("OIDC_RP_CLIENT_SECRET", "")
# https://idp.example.com/.well-known/openid-configuration: fills the endpoints left empty.
OIDC_OP_DISCOVERY_URL = os.environ.get("OIDC_OP_DISCOVERY_URL", "")
OIDC_OP_AUTHORIZATION_ENDPOINT = os.environ.get("OIDC_OP_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = os.environ.get("OIDC_OP_TOKEN_ENDPOINT", "")
OIDC_OP_USER_ENDPOINT = os.environ.get("OIDC_OP_USER_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = os.environ.get("OIDC_OP_JWKS_ENDPOINT", "")
# The ID token's iss must match (default: the discovery document's issuer).
OIDC_OP_ISSUER = os.environ.get("OIDC_OP_ISSUER", "")
OIDC_RP_SIGN_ALGO = os.environ.get("OIDC_RP_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = os.environ.get("OIDC_RP_SCOPES", "openid email profile groups")
OIDC_USE_PKCE = env_bool("OIDC_USE_PKCE", True)
OIDC_TIMEOUT = int(os.environ.get("OIDC_TIMEOUT", "10"))
# IdP group -> {"role": reviewer|manager|ops|admin, "workflows": [slugs or "*"]}, as JSON.
TENURE_OIDC_GROUP_MAP = os.environ.get("TENURE_OIDC_GROUP_MAP", "{}")
TENURE_OIDC_GROUPS_CLAIM = os.environ.get("TENURE_OIDC_GROUPS_CLAIM", "groups")
# Empty: preferred_username, else email.
TENURE_OIDC_USERNAME_CLAIM = os.environ.get("TENURE_OIDC_USERNAME_CLAIM", "")
TENURE_OIDC_LABEL = os.environ.get("TENURE_OIDC_LABEL", "Sign in with SSO")
# The backend authenticates nobody while SSO is unconfigured, so it is always listed.
AUTHENTICATION_BACKENDS.insert(1, "console.sso.TenureOIDCBackend")
TEMPLATES[0]["OPTIONS"]["context_processors"].append("console.sso.sso_context")

# --- Chat (Slack) -------------------------------------------------------------
# Approval requests go to TENURE_WEBHOOK_URL (or a workflow's ChatChannel); the
# buttons come back to /integrations/slack/actions, verified with the Slack app's
# signing secret. Empty: the endpoint answers 404.
TENURE_SLACK_SIGNING_SECRET = os.environ.get("TENURE_SLACK_SIGNING_SECRET", "")
# Where a click's response_url may point (the reply is posted there).
TENURE_SLACK_RESPONSE_URL_PREFIXES = tuple(
    p.strip()
    for p in os.environ.get("TENURE_SLACK_RESPONSE_URL_PREFIXES", "https://hooks.slack.com/").split(
        ","
    )
    if p.strip()
)

# --- OpenTelemetry ------------------------------------------------------------
# An OTLP/HTTP collector (e.g. http://otel-collector:4318); empty: no export.
# Headers for a hosted backend: the standard OTEL_EXPORTER_OTLP_HEADERS variable.
TENURE_OTEL_ENDPOINT = os.environ.get("TENURE_OTEL_ENDPOINT", "")
TENURE_OTEL_SERVICE_NAME = os.environ.get("TENURE_OTEL_SERVICE_NAME", "tenure")

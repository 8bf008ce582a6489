"""Settings for retellghl. The environment is read here and nowhere else (django-environ).

Every variable is documented in `.env.example`. Integrations are off until configured: a missing
vendor secret raises `integrations.errors.NotConfigured` where the feature is used, never at import.
"""

import sys
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# A development key is only acceptable with DEBUG on; production must set SECRET_KEY. Commands that
# read only the code, never a secret or a row (`makemigrations --check` on a bare clone), run without it.
CODE_ONLY_COMMANDS = {"makemigrations", "help", "version", "--help", "--version"}
SECRET_KEY = env("SECRET_KEY", default="dev-insecure-key-change-me" if DEBUG else None)
if SECRET_KEY is None:
    if len(sys.argv) > 1 and sys.argv[1] in CODE_ONLY_COMMANDS:
        SECRET_KEY = "unset-code-only-command"
    else:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (see .env.example).")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Public base URL of this server, used in links we write into GHL notes and in exported tool JSON.
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", default="http://localhost:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_q",
    "integrations",
    "calls",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "retellghl.urls"
WSGI_APPLICATION = "retellghl.wsgi.application"

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

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + a busy timeout let the web server and the django-q2 worker share the file.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# django-q2: Redis as the broker when configured, otherwise the database (ORM broker).
Q_CLUSTER = {
    "name": "retellghl",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": 120,
    "retry": 180,
    "max_attempts": 1,  # our outbox does its own retries with backoff; the queue must not re-run tasks
    "catch_up": False,
    "ack_failures": True,
    "save_limit": 1000,
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
# Tests and `--sync` runs execute queued work inline.
Q_CLUSTER["sync"] = env.bool("Q_SYNC", default=False)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
LOGIN_URL = "/admin/login/"

# Retell webhooks carry word-level transcripts that can weigh several MB. Django's 2.5 MB default
# would reject them; the webhook views enforce their own bound (RETELL_MAX_BODY_BYTES, 413 past it).
RETELL_MAX_BODY_BYTES = env.int("RETELL_MAX_BODY_BYTES", default=25 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = RETELL_MAX_BODY_BYTES

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "retellghl.api.json_exception_handler",
}

# --- Retell ---------------------------------------------------------------------------------
RETELL_API_KEY = env("RETELL_API_KEY", default="")
RETELL_BASE_URL = env("RETELL_BASE_URL", default="https://api.retellai.com").rstrip("/")
RETELL_SIGNATURE_TOLERANCE_MS = env.int("RETELL_SIGNATURE_TOLERANCE_MS", default=300_000)
RETELL_CONNECT_TIMEOUT = env.float("RETELL_CONNECT_TIMEOUT", default=3.05)
RETELL_READ_TIMEOUT = env.float("RETELL_READ_TIMEOUT", default=15.0)

# --- GoHighLevel ----------------------------------------------------------------------------
GHL_API_TOKEN = env("GHL_API_TOKEN", default="")
GHL_LOCATION_ID = env("GHL_LOCATION_ID", default="")
GHL_BASE_URL = env("GHL_BASE_URL", default="https://services.leadconnectorhq.com").rstrip("/")
GHL_CONNECT_TIMEOUT = env.float("GHL_CONNECT_TIMEOUT", default=3.05)
GHL_READ_TIMEOUT = env.float("GHL_READ_TIMEOUT", default=15.0)
# Live-call paths (inbound routing, in-call tools) use a shorter read timeout: a caller is waiting.
GHL_LIVE_READ_TIMEOUT = env.float("GHL_LIVE_READ_TIMEOUT", default=5.0)
# Background GHL work (post-call sync) pauses for the burst window once GHL reports this many requests
# left or fewer, leaving them to live calls. The pause is shared through the cache (Redis: all processes).
GHL_BACKGROUND_RESERVE = env.int("GHL_BACKGROUND_RESERVE", default=0)
DEFAULT_PHONE_REGION = env("DEFAULT_PHONE_REGION", default="US")
# The built-in GHL sandbox (integrations/sandbox): GHL requests are answered in-process from its own
# tables, nothing goes to GHL, no token is needed. For trying the product and staging new agents.
GHL_SANDBOX = env.bool("GHL_SANDBOX", default=False)
# A laptop tour on the sandbox has no Retell account: Retell requests are then verified with this
# well-known demo key, which `manage.py simulate_call` signs with by default. A key everyone knows
# proves nothing, so it applies only with DEBUG on and GHL answered by the sandbox.
SANDBOX_RETELL_API_KEY = "key_sandbox_demo_not_a_secret"
if not RETELL_API_KEY and GHL_SANDBOX and DEBUG:
    RETELL_API_KEY = SANDBOX_RETELL_API_KEY

# --- Inbound call routing -------------------------------------------------------------------
# The caller hears ringing until we answer Retell's inbound webhook. The GHL contact lookup gets what
# is left of this budget; past it we answer with the default route (fail open) and record why.
INBOUND_ROUTING_BUDGET_MS = env.int("INBOUND_ROUTING_BUDGET_MS", default=1500)
# Contact lookups are cached (Django cache) so repeat callers do not wait on GHL. "Not found" is kept
# briefly: a new caller may become a contact after the call and should be recognised next time.
INBOUND_CONTACT_CACHE_SECONDS = env.int("INBOUND_CONTACT_CACHE_SECONDS", default=60)
INBOUND_CONTACT_NOT_FOUND_CACHE_SECONDS = env.int("INBOUND_CONTACT_NOT_FOUND_CACHE_SECONDS", default=15)
# --- In-call tools --------------------------------------------------------------------------
# A side-effecting tool call repeated with the same (call, tool, arguments) within this window answers
# the first call's result instead of acting again (Retell retries; LLMs repeat themselves).
TOOL_IDEMPOTENCY_WINDOW_SECONDS = env.int("TOOL_IDEMPOTENCY_WINDOW_SECONDS", default=600)
# How long a concurrent duplicate waits for the first request's result before answering "in progress".
TOOL_DUPLICATE_WAIT_SECONDS = env.float("TOOL_DUPLICATE_WAIT_SECONDS", default=10.0)
# The GHL web app, for "open in GHL" links on the call page (agencies may white-label their own domain).
GHL_APP_URL = env("GHL_APP_URL", default="https://app.gohighlevel.com").rstrip("/")

# --- MCP tool server (/api/mcp) -------------------------------------------------------------
# Clients send their token as `Authorization: Bearer <token>` or in this header (for clients that can
# only set custom headers).
MCP_TOKEN_HEADER = env("MCP_TOKEN_HEADER", default="X-MCP-Token")
# Browser origins allowed to call the endpoint (e.g. https://inspector.example.com), besides our own
# host. Requests without an Origin header (server-to-server, like Retell's) are always allowed.
MCP_ALLOWED_ORIGINS = [origin.rstrip("/").lower() for origin in env.list("MCP_ALLOWED_ORIGINS", default=[])]
# One JSON-RPC message (tool arguments) is small; anything past this is refused with 413.
MCP_MAX_BODY_BYTES = env.int("MCP_MAX_BODY_BYTES", default=1024 * 1024)

# Key for encrypting stored GHL tokens (Fernet, urlsafe base64 of 32 bytes). When unset, a key is
# derived from SECRET_KEY; production should set its own so rotating SECRET_KEY keeps tokens readable.
FIELD_ENCRYPTION_KEY = env("FIELD_ENCRYPTION_KEY", default="")

# Route POST /bench/baseline, an empty view that bench/run.py measures as the framework's own cost
# (see bench/README.md). Never on in production.
BENCH_BASELINE_VIEW = env.bool("BENCH_BASELINE_VIEW", default=False)

# --- Production hardening (passes `manage.py check --deploy` with DEBUG off) ------------------
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.request": {"level": "ERROR"}},
}

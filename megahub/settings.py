"""MEGAHUB settings, read from the environment (and an optional `.env` file).

Every variable, its default and its meaning is listed in `.env.example`.
With no environment at all the service runs in its embedded mode: SQLite, jobs
in-process, no Redis. DEBUG is off unless asked for; with DEBUG off the secrets
must be given explicitly.
"""

import logging
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# --- Core -----------------------------------------------------------------------------

DEBUG = env.bool("DEBUG", default=False)
TESTING = env.bool("MEGAHUB_TESTING", default=False)


def _secret(name: str, dev_default: str) -> str:
    """A secret from the environment; only DEBUG or test runs may fall back to a dev value."""
    value = env.str(name, default="")
    if value:
        return value
    if DEBUG or TESTING:
        return dev_default
    raise ImproperlyConfigured(
        f"{name} must be set when DEBUG is off (see .env.example; `python3 dev.py run` "
        "writes a .env with generated values)."
    )


SECRET_KEY = _secret("SECRET_KEY", "dev-insecure-secret-key-" + "x" * 40)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "ai_core",
    "ai_usage",
    "ai_providers",
    "ai_openai",
]

MIDDLEWARE = [
    "megahub.middleware.TraceMiddleware",
    # Outside every middleware that can refuse a request (it rewrites their HTML pages).
    "megahub.middleware.ApiErrorMiddleware",
    "megahub.metrics.PrometheusMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "ai_core.middleware.BrandMiddleware",
]

ROOT_URLCONF = "megahub.urls"
# Request bodies up to 10 MiB (Django's default, 2.5 MiB, is below a full gpt-4.1 context
# of about a million tokens); a larger one is a 413 REQUEST_TOO_LARGE.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
WSGI_APPLICATION = "megahub.wsgi.application"
ASGI_APPLICATION = "megahub.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# --- Database -------------------------------------------------------------------------
# Default: a SQLite file (embedded mode). Production and CI: DATABASE_URL=postgres://...
# (psycopg 3).
#
# PostgreSQL uses a connection pool per process (psycopg_pool, DB_POOL=true by default): a
# thread takes a connection for its queries and gives it back when the request ends, or
# earlier through megahub.db.release_connection() (before a provider call), so the number
# of connections is DB_POOL_MAX_SIZE per process, not one per busy thread. Pooling needs
# CONN_MAX_AGE=0. DB_POOL=false goes back to persistent per-thread connections
# (DB_CONN_MAX_AGE, health checks).

DATABASES = {
    # Unset or empty (as .env.example leaves it): the SQLite file beside manage.py.
    "default": environ.Env.db_url_config(
        env.str("DATABASE_URL", default="") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
    ),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Threaded servers write concurrently: wait for the lock instead of failing, and take
    # the write lock at BEGIN so two writers never deadlock on an upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env.bool(
    "DB_POOL", default=True
):
    # Django's backend, with the pool built by megahub/postgresql/base.py: it checks a
    # connection before handing it out (an empty query), except one given back less than
    # DB_POOL_CHECK_AFTER seconds ago. That check replaces Django's (CONN_HEALTH_CHECKS).
    DATABASES["default"]["ENGINE"] = "megahub.postgresql"
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # required by the pool
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "name": "megahub",
        "check_after": env.float("DB_POOL_CHECK_AFTER", default=0.5),
        # Kept open per process (warm connections); it grows on demand up to max_size.
        "min_size": env.int("DB_POOL_MIN_SIZE", default=2),
        # Per process: gunicorn workers x max_size (+ Celery processes) must stay well under
        # PostgreSQL's max_connections (100 by default).
        "max_size": env.int("DB_POOL_MAX_SIZE", default=16),
        # Seconds a thread waits for a free connection before an OperationalError.
        "timeout": env.float("DB_POOL_TIMEOUT", default=30.0),
    }
    # Parameters bound by the server and statements prepared on each pooled connection
    # after their 2nd use: PostgreSQL parses and plans the hot path's statements once per
    # connection (measured in docs/performance.md). Safe with this pool; set it to false
    # behind a transaction-mode pooler (pgbouncer) that cannot keep prepared statements.
    if env.bool("DB_PREPARED_STATEMENTS", default=True):
        DATABASES["default"]["OPTIONS"]["server_side_binding"] = True
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = env.int(
            "DB_PREPARE_THRESHOLD", default=2
        )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis (optional) -----------------------------------------------------------------
# Without REDIS_URL: jobs run in-process, caches are local memory. With it: Celery broker,
# rate limits, circuit breaker state and caches live in Redis.

REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth, passwords, i18n, static ----------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    # Hashing is not what the tests measure; the default hasher costs ~300 ms a login.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG or TESTING

# --- HTTPS and cookies (production defaults when DEBUG is off) -------------------------

SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^metrics$", r"^health$"]

# --- REST framework, JWT, OpenAPI -----------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["ai_core.authentication.BrandRequestAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "megahub.filters.StrictOrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "megahub.pagination.StandardPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "megahub.exception_handler.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "megahub.parsers.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append(
        "rest_framework.renderers.BrowsableAPIRenderer"
    )

# JWTs have their own signing key: leaking or rotating SECRET_KEY must not touch them.
JWT_SIGNING_KEY = _secret("JWT_SIGNING_KEY", "dev-insecure-jwt-signing-key-" + "y" * 40)
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=30)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=1)),
    "SIGNING_KEY": JWT_SIGNING_KEY,
    "ALGORITHM": "HS256",
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": False,
    "TOKEN_REFRESH_SERIALIZER": "ai_core.authentication.TokenRefreshSerializer",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "MEGAHUB AI backoffice API",
    "DESCRIPTION": "Brands run AI jobs on OpenAI-class models under budgets and quotas.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Each operation's security comes from its authentication (megahub/openapi.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "megahub.openapi.gateway_paths_as_openai",
    ],
    # Two models have a "kind" choice set, and two a "priority" field.
    "ENUM_NAME_OVERRIDES": {
        "AIModelKindEnum": "ai_openai.models.AIModel.Kind",
        "UsageAlertKindEnum": "ai_usage.models.UsageAlert.Kind",
        "JobPriorityEnum": "ai_core.models.JobPriority",
    },
}

# --- Celery ---------------------------------------------------------------------------

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "normal"
# Priority queues: a worker started with `-Q urgent,high,normal,low` drains them in that
# order (the Redis transport polls queues in the order given when `queue_order_strategy`
# is "priority").
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "queue_order_strategy": "priority",
    # Publishing: fail fast when the broker is down (the sweeper re-dispatches later)
    # instead of holding the API request through long connection retries.
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.1,
    "interval_max": 0.2,
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=900),
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Keep our JSON log formatter (with trace ids) in workers too.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = {
    "sweep-jobs": {"task": "ai_core.tasks.sweep_jobs", "schedule": 30.0},
    "sweep-budget-reservations": {
        "task": "ai_providers.tasks.sweep_budget_reservations",
        "schedule": 300.0,
    },
}

# --- AI: models, budgets, quotas ------------------------------------------------------

AI_DEFAULT_MODEL = env.str("AI_DEFAULT_MODEL", default="gpt-4o")
AI_ENABLE_O3 = env.bool("AI_ENABLE_O3", default=True)
AI_O3_DAILY_BUDGET = Decimal(env.str("AI_O3_DAILY_BUDGET", default="100.00"))
AI_DAILY_BUDGET = Decimal(env.str("AI_DAILY_BUDGET", default="500.00"))
AI_DAILY_REASONING_JOBS_LIMIT = env.int("AI_DAILY_REASONING_JOBS_LIMIT", default=50)
AI_DEFAULT_MONTHLY_QUOTA = env.int("AI_DEFAULT_MONTHLY_QUOTA", default=1_000_000)
AI_O3_SPECIAL_QUOTA = env.int("AI_O3_SPECIAL_QUOTA", default=50_000)

# --- AI: executor (retries, timeouts, fallback) ---------------------------------------

AI_RETRY_DELAYS = [float(d) for d in env.list("AI_RETRY_DELAYS", default=["1", "2", "5"])]
AI_RETRY_MAX_WAIT = env.float("AI_RETRY_MAX_WAIT", default=60.0)
AI_PROVIDER_TIMEOUTS = {
    "openai": env.float("AI_OPENAI_TIMEOUT", default=30.0),
    "azure_openai": env.float("AI_AZURE_TIMEOUT", default=45.0),
    "anthropic": env.float("AI_ANTHROPIC_TIMEOUT", default=60.0),
    "google": env.float("AI_GOOGLE_TIMEOUT", default=60.0),
}
AI_MODEL_FALLBACK_CHAIN = env.list(
    "AI_MODEL_FALLBACK_CHAIN", default=["o3", "o3-mini", "gpt-4.1", "gpt-4o"]
)
# Celery time limits for one job, and how long a job may sit in `running` before the
# sweeper considers its worker lost.
AI_JOB_SOFT_TIME_LIMIT = env.int("AI_JOB_SOFT_TIME_LIMIT", default=540)
AI_JOB_TIME_LIMIT = env.int("AI_JOB_TIME_LIMIT", default=600)
AI_JOB_MAX_RECOVERIES = env.int("AI_JOB_MAX_RECOVERIES", default=3)
# How jobs run: "celery" (a worker, needs REDIS_URL), "thread" (an in-process pool: the
# embedded default) or "inline" (synchronously after commit: tests).
# (Empty, as `.env.example` leaves it, is the default: jobs never ran with "".)
AI_JOB_RUNNER = env.str("AI_JOB_RUNNER", default="") or ("celery" if REDIS_URL else "thread")
if AI_JOB_RUNNER not in ("celery", "thread", "inline"):
    raise ImproperlyConfigured(
        f"AI_JOB_RUNNER={AI_JOB_RUNNER!r}: use celery, thread or inline (or leave it empty)."
    )
AI_JOB_THREADS = env.int("AI_JOB_THREADS", default=8)
AI_RATE_LIMIT_REQUEUE_DELAY = env.float("AI_RATE_LIMIT_REQUEUE_DELAY", default=30.0)
AI_JOB_MAX_REQUEUES = env.int("AI_JOB_MAX_REQUEUES", default=5)
# Job webhooks (per brand, PATCH /ai/quotas/ job_webhook_url): a delivery that gets no 2xx
# is tried again after each of these delays (seconds), then given up.
AI_WEBHOOK_RETRY_DELAYS = [
    float(d) for d in env.list("AI_WEBHOOK_RETRY_DELAYS", default=["1", "5", "30", "120"])
]
AI_WEBHOOK_TIMEOUT = env.float("AI_WEBHOOK_TIMEOUT", default=5.0)
# Whether webhooks (jobs and alerts) may reach loopback, private, link-local and other
# non-public addresses. Off in production: a brand admin's URL must not make the server
# reach its own network (its database, a cloud metadata service). On with DEBUG, so a
# receiver on the developer's machine works.
AI_WEBHOOK_ALLOW_PRIVATE = (
    env.bool("AI_WEBHOOK_ALLOW_PRIVATE") if env.str("AI_WEBHOOK_ALLOW_PRIVATE", "") else DEBUG
)
# Group commit: the completions of runs that end at the same time in one process are
# written in one transaction (ai_core/groupcommit.py), and so are the jobs the sync paths
# create at the same time; each caller still returns only after its own is committed.
# false: one transaction per creation and per completion.
AI_GROUP_COMMIT = env.bool("AI_GROUP_COMMIT", default=True)

# Circuit breaker per credential: open after N consecutive failures (timeouts, 5xx,
# connection errors, 429), half-open after the cool-down. Shared through Redis if set.
AI_CIRCUIT_FAILURE_THRESHOLD = env.int("AI_CIRCUIT_FAILURE_THRESHOLD", default=5)
AI_CIRCUIT_COOLDOWN_SECONDS = env.float("AI_CIRCUIT_COOLDOWN_SECONDS", default=30.0)
AI_CIRCUIT_REDIS_PREFIX = env.str("AI_CIRCUIT_REDIS_PREFIX", default="megahub:circuit")
AI_HEALTH_WINDOW_SECONDS = env.int("AI_HEALTH_WINDOW_SECONDS", default=900)
AI_CONNECTION_TEST_TIMEOUT = env.float("AI_CONNECTION_TEST_TIMEOUT", default=10.0)

# --- AI: secrets ----------------------------------------------------------------------
# Comma-separated Fernet keys, newest first (MultiFernet): encrypts provider credentials.
# Never derived from SECRET_KEY.

AI_ENCRYPTION_KEY = env.str("AI_ENCRYPTION_KEY", default="")

# --- AI: monitoring and alerting ------------------------------------------------------

AI_ENABLE_ALERTING = env.bool("AI_ENABLE_ALERTING", default=False)
AI_ALERT_EMAIL = env.str("AI_ALERT_EMAIL", default="")
AI_LOG_CONTENT = env.bool("AI_LOG_CONTENT", default=False)
AI_DEFAULT_RPM_LIMIT = (
    env.int("AI_DEFAULT_RPM_LIMIT", default=None)
    if env.str("AI_DEFAULT_RPM_LIMIT", default="")
    else None
)
AI_DEFAULT_TPM_LIMIT = (
    env.int("AI_DEFAULT_TPM_LIMIT", default=None)
    if env.str("AI_DEFAULT_TPM_LIMIT", default="")
    else None
)
AI_RESPONSE_CACHE_TTL = env.int("AI_RESPONSE_CACHE_TTL", default=3600)
AI_RATE_LIMIT_WINDOW_SECONDS = env.float("AI_RATE_LIMIT_WINDOW_SECONDS", default=60.0)
# How long a process keeps the reference rows of the hot path (API keys, models,
# credentials, quotas, job types) before reading them again (megahub/refcache.py): a change
# made in another process applies within this time. 0 turns the caches off.
AI_REFERENCE_CACHE_SECONDS = env.float("AI_REFERENCE_CACHE_SECONDS", default=5.0)
# The file through which the processes of one machine tell each other that a reference row
# changed, so the change applies at once in all of them (megahub/refcache.py). Unset: one
# per database in the temporary directory; "off": none (other processes wait for the TTL).
AI_REFERENCE_CACHE_STAMP = env.str("AI_REFERENCE_CACHE_STAMP", default=None)
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="megahub@localhost")

# --- Logging: one JSON object per line, with trace ids --------------------------------

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# Python's warnings (a missing static directory, say) as log records, in JSON too.
logging.captureWarnings(True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "megahub.logging.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own loggers through the JSON handler only (its default config adds a
        # plain-text console handler under DEBUG: every 4xx was logged twice).
        "django": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        "django.server": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
    },
}

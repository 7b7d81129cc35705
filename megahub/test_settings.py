"""Settings for the test suite: the real settings plus fixed test secrets.

DATABASE_URL and REDIS_URL still come from the environment, so the same suite runs on
SQLite locally and on PostgreSQL + Redis in CI. Jobs run inline (right after commit)
unless a test starts a real Celery worker; retry delays are short.
"""

import os

os.environ.setdefault("MEGAHUB_TESTING", "true")
os.environ.setdefault("SECRET_KEY", "test-secret-key-" + "s" * 50)
os.environ.setdefault("JWT_SIGNING_KEY", "test-jwt-signing-key-" + "j" * 50)
# A fixed Fernet key for tests only (32 url-safe base64 bytes).
os.environ.setdefault("AI_ENCRYPTION_KEY", "dGVzdC1rZXktZm9yLXRlc3RzLW9ubHktMDAwMDAwMDA=")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("AI_JOB_RUNNER", "inline")
os.environ.setdefault("AI_RETRY_DELAYS", "0.05,0.1,0.2")
os.environ.setdefault("AI_RATE_LIMIT_REQUEUE_DELAY", "0.05")
os.environ.setdefault("AI_WEBHOOK_RETRY_DELAYS", "0.05,0.1")
# The tests' webhook receivers listen on 127.0.0.1 (the guard has its own tests).
os.environ.setdefault("AI_WEBHOOK_ALLOW_PRIVATE", "true")
# Tests change reference rows with QuerySet.update(); the caches have their own tests.
os.environ.setdefault("AI_REFERENCE_CACHE_SECONDS", "0")
# Functional tests make many calls without max_completion_tokens (each reserving the model's
# max output); budget tests set their own limits per brand.
os.environ.setdefault("AI_O3_SPECIAL_QUOTA", "100000000")
os.environ.setdefault("AI_DEFAULT_MONTHLY_QUOTA", "1000000000")
os.environ.setdefault("AI_DAILY_REASONING_JOBS_LIMIT", "100000")

from megahub.settings import *  # noqa: E402, F403

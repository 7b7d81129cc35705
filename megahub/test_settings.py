"""Settings for the test suite: the real settings plus fixed test secrets.

DATABASE_URL and REDIS_URL still come from the environment, so the same suite runs on
SQLite locally and on PostgreSQL + Redis in CI.
"""

import os

os.environ.setdefault("MEGAHUB_TESTING", "true")
os.environ.setdefault("SECRET_KEY", "test-secret-key-" + "s" * 50)
os.environ.setdefault("JWT_SIGNING_KEY", "test-jwt-signing-key-" + "j" * 50)
# A fixed Fernet key for tests only (32 url-safe base64 bytes).
os.environ.setdefault("AI_ENCRYPTION_KEY", "dGVzdC1rZXktZm9yLXRlc3RzLW9ubHktMDAwMDAwMDA=")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")

from megahub.settings import *  # noqa: E402, F403

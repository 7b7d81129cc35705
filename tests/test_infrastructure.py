"""The suite runs on the real services in CI: PostgreSQL (psycopg 3) and Redis."""

import os

import pytest
from django.conf import settings
from django.db import connection

IN_CI = os.environ.get("CI") == "true"


ci_only = pytest.mark.skipif(not IN_CI, reason="asserted in CI (CI=true); locally SQLite is fine")


@ci_only
@pytest.mark.django_db
def test_ci_runs_on_postgresql_with_psycopg3():
    assert connection.vendor == "postgresql"
    import psycopg

    assert connection.connection.__class__.__module__.startswith("psycopg")
    assert psycopg.__version__.startswith("3.")


@ci_only
def test_ci_has_a_reachable_redis():
    import redis

    assert settings.REDIS_URL, "CI must set REDIS_URL"
    assert redis.Redis.from_url(settings.REDIS_URL).ping()

"""PostgreSQL connection pool (DB_POOL): connections are not tied to gunicorn threads.

The settings build a psycopg pool per process from DB_POOL_*; ``release_connection()``
gives a thread's connection back to the pool (before a provider call) except inside a
transaction; and a real gunicorn with more threads than pooled connections serves every
request while PostgreSQL never sees more than workers x DB_POOL_MAX_SIZE connections.

The settings tests run anywhere (a subprocess builds the settings); the others need
PostgreSQL: they skip without it locally and fail with CI=true.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from rest_framework_simplejwt.tokens import AccessToken

from megahub.db import release_connection
from tests.workers import IN_CI, ROOT, api_server, database_url, parallel_posts

PG_URL = "postgres://postgres@127.0.0.1:5432/megahub"


def require_postgres() -> None:
    if connection.vendor == "postgresql":
        return
    message = "pool tests need PostgreSQL (set DATABASE_URL)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def require_pool() -> None:
    require_postgres()
    if connection.pool is None:  # DB_POOL=false in this environment
        pytest.skip("the test database runs without the pool (DB_POOL=false)")


def built_settings(**env: str) -> dict:
    """DATABASES["default"] as the settings build it from ``env`` (in a fresh process)."""
    code = (
        "import json; from megahub import test_settings as s; "
        "print(json.dumps(s.DATABASES['default'], default=str))"
    )
    variables = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        # Explicit values, so a developer's .env (read without overwriting) changes nothing.
        "DB_POOL": "",
        "DB_POOL_MIN_SIZE": "",
        "DB_POOL_MAX_SIZE": "",
        "DB_POOL_TIMEOUT": "",
        "DB_POOL_CHECK_AFTER": "",
        "DB_CONN_MAX_AGE": "",
        "DB_PREPARED_STATEMENTS": "",
        **env,
    }
    # An empty value means "unset" for these: drop them so the defaults apply.
    variables = {k: v for k, v in variables.items() if v != ""}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=variables,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


# --- Settings -----------------------------------------------------------------------------


def test_postgres_uses_a_pool_by_default():
    db = built_settings(DATABASE_URL=PG_URL)
    assert db["CONN_MAX_AGE"] == 0  # Django's pool refuses persistent connections
    # The pool's windowed check (megahub/postgresql/base.py) replaces Django's.
    assert db["ENGINE"] == "megahub.postgresql"
    assert db["CONN_HEALTH_CHECKS"] is False
    assert db["OPTIONS"]["pool"] == {
        "name": "megahub",
        "check_after": 0.5,
        "min_size": 2,
        "max_size": 16,
        "timeout": 30.0,
    }
    assert db["OPTIONS"]["server_side_binding"] is True
    assert db["OPTIONS"]["prepare_threshold"] == 2


def test_prepared_statements_can_be_turned_off():
    db = built_settings(DATABASE_URL=PG_URL, DB_PREPARED_STATEMENTS="false")
    assert "server_side_binding" not in db["OPTIONS"]
    assert "prepare_threshold" not in db["OPTIONS"]
    assert "pool" in db["OPTIONS"]


def test_pool_sizes_come_from_the_environment():
    db = built_settings(
        DATABASE_URL=PG_URL,
        DB_POOL="true",
        DB_POOL_MIN_SIZE="1",
        DB_POOL_MAX_SIZE="5",
        DB_POOL_TIMEOUT="2.5",
        DB_POOL_CHECK_AFTER="0",
        DB_CONN_MAX_AGE="60",  # ignored with the pool
    )
    assert db["CONN_MAX_AGE"] == 0
    assert db["OPTIONS"]["pool"] == {
        "name": "megahub",
        "check_after": 0.0,
        "min_size": 1,
        "max_size": 5,
        "timeout": 2.5,
    }


def test_db_pool_false_keeps_persistent_connections():
    db = built_settings(DATABASE_URL=PG_URL, DB_POOL="false", DB_CONN_MAX_AGE="42")
    assert "pool" not in db.get("OPTIONS", {})
    assert db["CONN_MAX_AGE"] == 42
    assert db["CONN_HEALTH_CHECKS"] is True


def test_sqlite_has_no_pool():
    db = built_settings(DATABASE_URL="sqlite:////tmp/megahub-pool-test.sqlite3", DB_POOL="true")
    assert "pool" not in db["OPTIONS"]
    assert db["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


# --- release_connection() -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_test_database_runs_on_the_pool_from_settings():
    require_pool()
    from django.conf import settings

    pool = connection.pool
    options = settings.DATABASES["default"]["OPTIONS"]["pool"]
    assert (pool.min_size, pool.max_size, pool.timeout) == (
        options["min_size"],
        options["max_size"],
        options["timeout"],
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        assert cursor.fetchone()[0] == connection.settings_dict["NAME"]  # the test database


@pytest.mark.django_db(transaction=True)
def test_release_connection_gives_the_connection_back_to_the_pool():
    require_pool()
    User = get_user_model()
    User.objects.create(username="pool-user")
    pool = connection.pool
    held = connection.connection
    assert held is not None
    available = pool.get_stats()["pool_available"]

    assert release_connection() is True

    assert connection.connection is None
    assert pool.get_stats()["pool_available"] == available + 1
    assert held in pool._pool  # the very connection is back, open, for any thread
    assert not held.closed

    # The next query in this thread takes a connection from the pool again.
    assert User.objects.filter(username="pool-user").exists()
    assert connection.connection is not None
    assert pool.get_stats()["pool_available"] == available
    assert release_connection() is True
    assert release_connection() is False  # nothing held any more: a no-op


@pytest.mark.django_db(transaction=True)
def test_release_connection_is_a_noop_inside_a_transaction():
    require_pool()
    User = get_user_model()
    with transaction.atomic():
        User.objects.create(username="in-transaction")
        held = connection.connection
        available = connection.pool.get_stats()["pool_available"]

        assert release_connection() is False

        assert connection.connection is held
        assert connection.pool.get_stats()["pool_available"] == available
        # Still the same transaction: the uncommitted row is visible, savepoints work.
        assert User.objects.filter(username="in-transaction").exists()
    assert User.objects.filter(username="in-transaction").exists()  # committed


@pytest.mark.django_db(transaction=True)
def test_release_connection_is_a_noop_with_autocommit_off():
    require_pool()
    connection.ensure_connection()
    transaction.set_autocommit(False)
    try:
        held = connection.connection
        assert release_connection() is False
        assert connection.connection is held
    finally:
        transaction.rollback()
        transaction.set_autocommit(True)


@pytest.mark.django_db(transaction=True)
def test_release_connection_is_a_noop_without_a_pool(monkeypatch):
    connection.ensure_connection()
    if connection.vendor == "postgresql":
        options = {k: v for k, v in connection.settings_dict["OPTIONS"].items() if k != "pool"}
        monkeypatch.setitem(connection.settings_dict, "OPTIONS", options)
    held = connection.connection

    assert release_connection() is False  # the connection is the thread's own: keep it

    assert connection.connection is held


# --- A real gunicorn: more threads than pooled connections --------------------------------

WORKERS, THREADS, POOL_MAX = 2, 24, 4
CHAT_BODY = {
    "model": "gpt-4o",
    "max_completion_tokens": 20,
    "messages": [{"role": "user", "content": "Hello"}],
}


def _peak_connections(application_name: str, stop: threading.Event, peak: list[int]) -> None:
    """Poll pg_stat_activity for the server's connections (tagged by application_name)."""
    db = connection.settings_dict
    with _raw_connection("postgres") as monitor:
        while not stop.is_set():
            (count,) = monitor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                "AND application_name = %s",
                [db["NAME"], application_name],
            ).fetchone()
            peak[0] = max(peak[0], count)
            stop.wait(0.02)


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(240)
def test_gunicorn_threads_beyond_the_pool_share_its_connections(
    chat_ready, fake_openai, brand, admin_user
):
    """48 requests in flight (2 workers x 24 threads) on 2 x 4 pooled connections: all are
    served, and PostgreSQL sees at most workers x DB_POOL_MAX_SIZE server connections.

    The bound has no margin: psycopg_pool counts connections being opened with those in
    use, so a process never has more than max_size (nothing is recycled during the test:
    max_lifetime and max_idle are minutes). The server's connections are told apart from
    this process's by an application_name of their own.
    """
    require_pool()
    fake_openai.configure(latency_ms=200)
    application_name = f"megahub-pool-test-{uuid.uuid4().hex[:8]}"
    extra_env = {
        "DATABASE_URL": f"{database_url()}?application_name={application_name}",
        "DB_POOL": "true",
        "DB_POOL_MIN_SIZE": "1",
        "DB_POOL_MAX_SIZE": str(POOL_MAX),
        "DB_POOL_TIMEOUT": "60",
    }
    stop, peak = threading.Event(), [0]
    with api_server(workers=WORKERS, threads=THREADS, extra_env=extra_env) as server:
        monitor = threading.Thread(
            target=_peak_connections, args=(application_name, stop, peak), daemon=True
        )
        monitor.start()
        try:
            results = parallel_posts(
                f"{server.url}/ai/openai/chat/",
                str(AccessToken.for_user(admin_user)),
                "acme",
                [CHAT_BODY] * (WORKERS * THREADS * 2),
                WORKERS * THREADS,
            )
        finally:
            stop.set()
            monitor.join(timeout=10)
        log = server.log_path.read_text(errors="replace")

    codes = [status for status, _ in results]
    assert codes.count(200) == len(results), (sorted(set(codes)), log[-3000:])
    assert "too many clients" not in log
    assert "PoolTimeout" not in log
    assert 0 < peak[0] <= WORKERS * POOL_MAX, peak[0]


# --- The pool's check (megahub/postgresql/base.py) ----------------------------------------


def _raw_connection(dbname: str | None = None) -> Any:
    """A psycopg connection of its own to the test server (the test database by default)."""
    import psycopg

    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"] or "postgres",
        password=db.get("PASSWORD") or None,
        dbname=dbname or db["NAME"],
        autocommit=True,
    )


def _terminated(conn: Any) -> None:
    """End ``conn``'s server process from another connection, and wait until it is gone."""
    pid = conn.info.backend_pid
    with _raw_connection() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 10
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            assert time.monotonic() < deadline, "the backend did not end"
            time.sleep(0.05)


@pytest.mark.django_db(transaction=True)
def test_pool_check_skips_the_query_for_a_connection_given_back_moments_ago():
    require_postgres()
    import psycopg

    from megahub.postgresql.base import pool_check, returned

    conn = _raw_connection()
    try:
        returned(conn)  # given back to the pool just now
        _terminated(conn)

        # Within the window: handed out on what psycopg knows (open, idle), no query — a
        # query would have failed on the dead server process.
        pool_check(60.0)(conn)

        # Past the window (0 s: always), the full check queries the server and fails, so
        # the pool would replace the connection.
        with pytest.raises(psycopg.OperationalError):
            pool_check(0.0)(conn)
    finally:
        conn.close()


@pytest.mark.django_db(transaction=True)
def test_pool_check_queries_a_connection_never_given_back_or_in_a_transaction():
    require_postgres()
    import psycopg

    from megahub.postgresql.base import pool_check, returned

    fresh = _raw_connection()
    busy = _raw_connection()
    try:
        _terminated(fresh)  # never given back: no timestamp
        with pytest.raises(psycopg.OperationalError):
            pool_check(60.0)(fresh)

        returned(busy)
        busy.autocommit = False
        busy.execute("SELECT 1")  # a transaction left open: not idle, so checked
        assert busy.pgconn.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        with pytest.raises(psycopg.Error):  # the full check refuses it
            pool_check(60.0)(busy)
    finally:
        fresh.close()
        busy.close()


@pytest.mark.django_db(transaction=True)
def test_the_pool_from_settings_uses_the_windowed_check():
    require_pool()
    from django.conf import settings

    assert settings.DATABASES["default"]["OPTIONS"]["pool"]["check_after"] == 0.5
    assert connection.pool._check.window == 0.5
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is False

    # A connection given back is stamped: the check's window starts there.
    get_user_model().objects.exists()
    held = connection.connection
    assert release_connection() is True
    assert time.monotonic() - held._megahub_returned_at < 5

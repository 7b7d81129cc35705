"""Real processes for worker tests: a Celery worker, a throwaway redis-server.

Worker tests need PostgreSQL (the worker is another process and must see the test
database) and Redis (the broker). Locally they skip when those are absent; with CI=true
they fail instead, so CI can never pass without having run them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"


def require_postgres() -> None:
    """Concurrent writers in threads (SQLite's shared in-memory test database would refuse
    them with 'table is locked')."""
    if connection.vendor != "postgresql":
        _missing(["PostgreSQL (set DATABASE_URL)"], "concurrent-writer tests")


def require_postgres_and_redis() -> None:
    problems = []
    if connection.vendor != "postgresql":
        problems.append("PostgreSQL (set DATABASE_URL)")
    if not settings.REDIS_URL:
        problems.append("Redis (set REDIS_URL)")
    else:
        import redis

        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1).ping()
        except redis.RedisError:
            problems.append(f"a reachable Redis at {settings.REDIS_URL}")
    if problems:
        _missing(problems, "worker tests")


def _missing(problems: list[str], what: str) -> None:
    message = f"{what} need " + " and ".join(problems)
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] or "postgres"
    if db.get("PASSWORD"):
        auth += f":{db['PASSWORD']}"
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CeleryWorker:
    """``celery -A megahub worker`` in a subprocess, on the test database and a broker."""

    def __init__(self, broker_url: str, concurrency: int = 2, extra_env: dict | None = None):
        self.broker_url = broker_url
        self.concurrency = concurrency
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="celery-worker-", suffix=".log")[1])

    def start(self) -> CeleryWorker:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "megahub.test_settings",
            "DATABASE_URL": database_url(),
            "REDIS_URL": self.broker_url,
            "AI_JOB_RUNNER": "celery",
            "PYTHONPATH": str(ROOT),
            **self.extra_env,
        }
        self.log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "megahub",
                "worker",
                "-P",
                "prefork",
                "-c",
                str(self.concurrency),
                "-Q",
                "urgent,high,normal,low",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "INFO",
                "-n",
                f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "ready." in self.log():
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited:\n{self.log()[-3000:]}")
            time.sleep(0.2)
        raise RuntimeError(f"celery worker did not start:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def child_pids(self) -> list[int]:
        assert self.process is not None
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.process.pid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return [int(pid) for pid in out.split()]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "log_file", None):
            self.log_file.close()


@contextmanager
def celery_worker(broker_url: str, **kwargs) -> Iterator[CeleryWorker]:
    worker = CeleryWorker(broker_url, **kwargs).start()
    try:
        yield worker
    finally:
        worker.stop()


class RedisServer:
    """A redis-server of our own on a spare port, so stopping it affects no other test."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            if IN_CI:
                pytest.fail("redis-server is not installed")
            pytest.skip("redis-server is not installed")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _holds(predicate):
            return True
        time.sleep(interval)
    return predicate()


def _holds(predicate) -> bool:
    from django.db import OperationalError, connection

    try:
        return bool(predicate())
    except OperationalError:
        # SQLite's shared in-memory test database answers "table is locked" at once (no
        # busy wait) while another thread (a live server) writes: ask again.
        if connection.vendor != "sqlite":
            raise
        return False


@contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """Point this process's Celery app at another broker, dropping cached connections
    (kombu keeps pools per URL process-wide) both ways."""
    from kombu import pools

    from megahub.celery import app

    def reset() -> None:
        pools.reset()
        app._pool = None
        app.amqp._producer_pool = None

    previous = app.conf.broker_url
    app.conf.broker_url = url
    reset()
    try:
        yield
    finally:
        app.conf.broker_url = previous
        reset()


class ApiServer:
    """The API under gunicorn (threaded, as in production) on the test database."""

    def __init__(self, workers: int = 2, threads: int = 16, extra_env: dict | None = None):
        self.port = free_port()
        self.workers, self.threads = workers, threads
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="gunicorn-", suffix=".log")[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiServer:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "megahub.test_settings",
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "GUNICORN_WORKERS": str(self.workers),
            "GUNICORN_THREADS": str(self.threads),
            "PYTHONPATH": str(ROOT),
            "LOG_LEVEL": "WARNING",
            **self.extra_env,
        }
        self.log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "megahub.wsgi:application",
                "--config",
                "gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{self.port}",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        import urllib.request

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1):
                    return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(self.log_path.read_text()[-3000:]) from None
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not start:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if getattr(self, "log_file", None):
            self.log_file.close()


@contextmanager
def api_server(**kwargs) -> Iterator[ApiServer]:
    server = ApiServer(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()


def parallel_posts(
    url: str, token: str, brand: str, bodies: list[dict], concurrency: int
) -> list[tuple[int, dict]]:
    """POST every body at once from ``concurrency`` threads; (status, json) per request."""
    import json
    import urllib.error
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier, BrokenBarrierError

    barrier = Barrier(min(concurrency, len(bodies)))

    def post(body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {token}",
                "X-Brand-ID": brand,
            },
            method="POST",
        )
        with contextlib.suppress(BrokenBarrierError):  # only loses the common start-line
            barrier.wait(timeout=30)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(post, bodies))

"""Gateway overhead: the fake OpenAI server alone vs through ``POST /ai/v1/chat/completions``
vs through ``POST /ai/openai/chat/``, on PostgreSQL + Redis under gunicorn.

What it does:

1. creates a dedicated PostgreSQL database (dropped at the end unless ``--keep-db``),
   migrates it, seeds it (``setup_ai_infrastructure --include-o3``), creates brand
   ``bench`` with an admin user (``create_brand``), a generous ``BrandQuota`` (budgets and
   quotas nothing reaches; rpm/tpm limits set high so the Redis rate limiter runs), an
   OpenAI credential whose ``api_base`` is the fake server, and a gateway API key;
2. counts what one request costs, in this process through Django's test client against
   the same database and Redis: SQL queries (``CaptureQueriesContext``, each attributed
   to the application function that issued it), commits, the connection health check,
   Redis commands and provider calls;
3. runs the bundled fake server (``python -m ai_core.fake_openai --latency-ms L``) and the
   API under gunicorn with the repo's ``gunicorn.conf.py`` and the production settings
   (``megahub.settings``, DEBUG off, SECURE_SSL_REDIRECT off, LOG_LEVEL=WARNING, Redis for
   the rate limiter and the circuit breaker);
4. drives each scenario from a separate load process (asyncio, raw-socket HTTP/1.1
   keep-alive connections, one request in flight per connection): a warm-up, then a fixed
   measuring window. Latency = write of the request to the last byte of the response,
   for the requests started in the window; RPS = requests completed in the window;
5. samples the peak RSS of the gunicorn processes (master + workers, /proc) and the CPU
   used by gunicorn, the database's backends, Redis, the fake server and the load process;
6. prints the results and writes the "Gateway overhead" section of docs/performance.md.

Usage::

    .venv/bin/python benchmarks/gateway_overhead.py
        [--database-url postgres://postgres@127.0.0.1:5432/megahub_bench_gateway]
        [--redis-url redis://127.0.0.1:6379/10] [--workers N] [--threads N]
        [--duration 10] [--slow-duration 15] [--only fake,bare,gateway,chat] [--no-docs] [--keep-db]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import itertools
import json
import math
import os
import platform
import re
import runpy
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/megahub_bench_gateway"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/10"
DOC_PATH = REPO_ROOT / "docs" / "performance.md"
SECTION_TITLE = "## Gateway overhead (benchmarks/gateway_overhead.py)"
BRAND = "bench"
USERNAME = "bench"
UPSTREAM_KEY = "sk-bench-" + "0123456789abcdef" * 3
SLOW_MS = 1000
APP_DIRS = ("ai_core", "ai_usage", "ai_providers", "ai_openai", "megahub")

# The targets.
OVERHEAD_TARGET_MS = 5.0
RPS_C8_TARGET = 350.0
RPS_C256_TARGET = 200.0
P95_C256_TARGET_MS = 1500.0

REQUEST_BODY: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
    "max_tokens": 16,
}
STREAM_BODY: dict[str, Any] = {
    **REQUEST_BODY,
    "stream": True,
    "stream_options": {"include_usage": True},
}

TARGET_LABELS = {
    "fake": "fake server alone",
    "gateway": "`POST /ai/v1/chat/completions`",
    "chat": "`POST /ai/openai/chat/`",
    "bare": "bare Django relay (reference)",
}


def log(message: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--workers", type=int, help="GUNICORN_WORKERS (default: the config's)")
    parser.add_argument("--threads", type=int, help="GUNICORN_THREADS (default: the config's)")
    parser.add_argument("--duration", type=float, default=10.0, help="s, instant upstream")
    parser.add_argument("--slow-duration", type=float, default=15.0, help="s, 1 s upstream")
    parser.add_argument("--warmup", type=float, default=2.0, help="s before each window")
    parser.add_argument("--only", default="fake,bare,gateway,chat", help="targets to run")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    parser.add_argument("--load-worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


# -- load generator (runs in its own process: ``--load-worker``, spec on stdin) -------------


def build_request(spec: dict[str, Any]) -> bytes:
    payload = json.dumps(spec["body"]).encode()
    head = [
        f"POST {spec['path']} HTTP/1.1",
        f"Host: {spec['host']}:{spec['port']}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        *(f"{k}: {v}" for k, v in spec["headers"].items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response (Content-Length, chunked or to EOF): (status, server closes)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lowered = head.lower()
    closes = b"\r\nconnection: close" in lowered
    marker = lowered.find(b"\r\ncontent-length:")
    if marker >= 0:
        end = lowered.index(b"\r\n", marker + 2)
        await reader.readexactly(int(lowered[marker + 17 : end]))
    elif b"\r\ntransfer-encoding: chunked" in lowered:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.read()
        closes = True
    return status, closes


@dataclass
class LoadState:
    measure_start: float
    measure_end: float
    latencies: list[float] = field(default_factory=list)  # of the 200 responses
    error_latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    completed_in_window: int = 0  # 200 responses only


async def connection_loop(spec: dict[str, Any], request: bytes, state: LoadState) -> None:
    host, port, timeout = spec["host"], spec["port"], spec["timeout"]
    reader = writer = None
    while time.perf_counter() < state.measure_end:
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                state.statuses["connect failed"] += 1
                await asyncio.sleep(0.05)
                continue
        started = time.perf_counter()
        in_window = state.measure_start <= started < state.measure_end
        closes = False
        try:
            writer.write(request)
            status, closes = await asyncio.wait_for(read_response(reader), timeout)
            outcome: int | str = status
        except TimeoutError:
            outcome, closes = "timeout", True
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            outcome, closes = "connection error", True
        finished = time.perf_counter()
        if in_window:
            target = state.latencies if outcome == 200 else state.error_latencies
            target.append((finished - started) * 1000)
            state.statuses[outcome] += 1
        if outcome == 200 and state.measure_start <= finished < state.measure_end:
            state.completed_in_window += 1
        if closes:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def load_worker() -> None:
    """Run one scenario's load; print MEASURE and END marks, then the result as JSON."""
    spec = json.loads(sys.stdin.read())
    request = build_request(spec)

    async def main() -> LoadState:
        now = time.perf_counter()
        state = LoadState(now + spec["warmup"], now + spec["warmup"] + spec["duration"])
        tasks = [
            asyncio.create_task(connection_loop(spec, request, state))
            for _ in range(spec["concurrency"])
        ]
        await asyncio.sleep(max(0.0, state.measure_start - time.perf_counter()))
        print("MEASURE", flush=True)
        cpu_start = sum(os.times()[:2])
        await asyncio.sleep(max(0.0, state.measure_end - time.perf_counter()))
        state.cpu_s = sum(os.times()[:2]) - cpu_start  # type: ignore[attr-defined]
        print("END", flush=True)
        await asyncio.wait(tasks, timeout=spec["timeout"] + 5)
        return state

    state = asyncio.run(main())
    print(
        json.dumps(
            {
                "latencies": [round(v, 3) for v in state.latencies],
                "error_latencies": [round(v, 3) for v in state.error_latencies],
                "statuses": {str(k): v for k, v in state.statuses.items()},
                "completed_in_window": state.completed_in_window,
                "cpu_s": state.cpu_s,  # type: ignore[attr-defined]
            }
        ),
        flush=True,
    )
    os._exit(0)  # do not wait for connections still in flight past the drain timeout


# -- processes: database, fake server, gunicorn ---------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_name(database_url: str) -> str:
    name = urlsplit(database_url).path.lstrip("/")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise SystemExit(f"Refusing odd database name {name!r}.")
    return name


def admin_url(database_url: str) -> str:
    return urlunsplit(urlsplit(database_url)._replace(path="/postgres"))


def create_database(database_url: str) -> None:
    import psycopg

    name = database_name(database_url)
    with psycopg.connect(admin_url(database_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(database_url: str) -> None:
    import psycopg

    name = database_name(database_url)
    with psycopg.connect(admin_url(database_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """The environment of the API: production settings with fixed secrets for this run."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "megahub.settings",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false",
        "LOG_LEVEL": "WARNING",
        "SECRET_KEY": args.secret_key,
        "JWT_SIGNING_KEY": args.jwt_key,
        "AI_ENCRYPTION_KEY": args.fernet_key,
        "JWT_ACCESS_MINUTES": "240",
    }
    env.pop("MEGAHUB_TESTING", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if args.workers:
        env["GUNICORN_WORKERS"] = str(args.workers)
    if args.threads:
        env["GUNICORN_THREADS"] = str(args.threads)
    return env


def gunicorn_shape(env: dict[str, str]) -> tuple[int, int]:
    """Workers and threads the config resolves to under ``env``."""
    saved = dict(os.environ)
    # The worker count depends on REDIS_URL too (one worker without Redis).
    os.environ.update(
        {k: v for k, v in env.items() if k.startswith("GUNICORN_") or k == "REDIS_URL"}
    )
    try:
        config = runpy.run_path(str(REPO_ROOT / "gunicorn.conf.py"))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return int(config["workers"]), int(config["threads"])


def start_fake(port: int, latency_ms: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ai_core.fake_openai",
            "--port",
            str(port),
            "--latency-ms",
            str(latency_ms),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "http://" not in line:
        process.kill()
        raise SystemExit(f"fake server did not start: {line!r}")
    return process


def start_gunicorn(
    env: dict[str, str], port: int, log_path: Path, app: str = "megahub.wsgi"
) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [
                str(REPO_ROOT / ".venv" / "bin" / "gunicorn"),
                app,
                "-c",
                str(REPO_ROOT / "gunicorn.conf.py"),
                "-b",
                f"127.0.0.1:{port}",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log_file,
            stderr=log_file,
        )
    return wait_healthy(process, port, f"gunicorn did not start; see {log_path}")


def wait_healthy(process: subprocess.Popen[Any], port: int, failure: str) -> subprocess.Popen[Any]:
    """``process`` once ``GET /health`` on ``port`` answers 200 (60 s at most); else kill
    it and stop with ``failure``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                conn.close()
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(failure)


def stop(process: subprocess.Popen[Any] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- /proc: memory and CPU ------------------------------------------------------------------


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids_matching(pattern: str) -> list[int]:
    """Processes whose command line contains ``pattern`` (PostgreSQL backends show
    ``postgres: … <user> <database> <client>``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pattern in cmdline:
            found.append(int(entry.name))
    return found


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


class Probe:
    """Peak RSS of the gunicorn tree (sampled every 0.1 s), the CPU use of the processes
    taking part between ``mark()`` and ``read()``, and meanwhile (every 0.2 s, from
    ``pg_stat_activity``) how many of the database's sessions wait on a lock or sit idle
    inside a transaction, and which statements are waiting."""

    def __init__(self, gunicorn_pid: int, fake_pid: int, database_url: str) -> None:
        import psycopg

        self.gunicorn_pid = gunicorn_pid
        self.fake_pid = fake_pid
        self.database = database_name(database_url)
        self.backend_pattern = f" {self.database} "
        self.redis_pids = pids_matching("redis-server")
        self.peak_kb = 0
        self.peak_backends = 0
        self._stop = threading.Event()
        self._cpu: dict[str, dict[int, float]] = {}
        self._busy = (0.0, 0.0)
        self._activity = psycopg.connect(database_url, autocommit=True)
        self._own_pid = self._activity.info.backend_pid
        self._measuring = False
        self.locks: dict[str, Any] = {}
        self._reset_locks()
        self._threads = [
            threading.Thread(target=self._sample, daemon=True),
            threading.Thread(target=self._sample_locks, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _reset_locks(self) -> None:
        self.locks = {"samples": 0, "waiting": 0, "idle_in_transaction": 0, "waits": Counter()}

    def _sample_locks(self) -> None:
        query = (
            "SELECT wait_event_type, state, left(query, 300) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()"
        )
        while not self._stop.wait(0.2):
            if not self._measuring:
                continue
            rows = self._activity.execute(query, [self.database]).fetchall()
            self.locks["samples"] += 1
            for wait_type, state, sql in rows:
                if wait_type == "Lock":
                    self.locks["waiting"] += 1
                    self.locks["waits"][_shape(sql or "")] += 1
                elif state == "idle in transaction":
                    self.locks["idle_in_transaction"] += 1

    def backend_pids(self) -> list[int]:
        return [pid for pid in pids_matching(self.backend_pattern) if pid != self._own_pid]

    def gunicorn_pids(self) -> list[int]:
        return [self.gunicorn_pid, *children(self.gunicorn_pid)]

    def gunicorn_rss_kb(self) -> int:
        return sum(rss_kb(pid) for pid in self.gunicorn_pids())

    def _sample(self) -> None:
        ticks = 0
        while not self._stop.wait(0.1):
            self.peak_kb = max(self.peak_kb, self.gunicorn_rss_kb())
            ticks += 1
            if ticks % 3 == 0:
                self.peak_backends = max(self.peak_backends, len(self.backend_pids()))

    def reset_peak(self) -> None:
        self.peak_kb = self.gunicorn_rss_kb()
        self.peak_backends = len(self.backend_pids())

    def _groups(self) -> dict[str, list[int]]:
        return {
            "gunicorn": self.gunicorn_pids(),
            "postgres": self.backend_pids(),
            "redis": self.redis_pids,
            "fake": [self.fake_pid],
        }

    def mark(self) -> None:
        self._cpu = {
            name: {pid: cpu_s(pid) for pid in pids} for name, pids in self._groups().items()
        }
        self._busy = machine_busy()
        self._reset_locks()
        self._measuring = True

    def read(self) -> dict[str, float]:
        self._measuring = False
        used = {}
        for name, pids in self._groups().items():
            before = self._cpu.get(name, {})
            used[name] = sum(cpu_s(pid) - before.get(pid, 0.0) for pid in pids)
        busy, total = machine_busy()
        used["machine_busy_share"] = (busy - self._busy[0]) / max(1.0, total - self._busy[1])
        return used

    def lock_summary(self) -> dict[str, Any]:
        samples = max(1, self.locks["samples"])
        return {
            "waiting": self.locks["waiting"] / samples,
            "idle_in_transaction": self.locks["idle_in_transaction"] / samples,
            "waits": {k: v / samples for k, v in self.locks["waits"].most_common(3)},
        }

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._activity.close()


# -- scenarios ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    target: str  # fake | gateway | chat
    latency_ms: int
    concurrency: int
    stream: bool = False

    @property
    def key(self) -> tuple[int, int, bool]:
        return self.latency_ms, self.concurrency, self.stream

    @property
    def label(self) -> str:
        return f"{self.target}{' stream' if self.stream else ''}"


def scenarios(only: set[str]) -> list[Scenario]:
    plan = []
    for concurrency in (1, 8, 32):
        plan += [Scenario(t, 0, concurrency) for t in ("fake", "bare", "gateway", "chat")]
    for concurrency in (32, 256):
        plan += [
            Scenario("fake", SLOW_MS, concurrency),
            Scenario("fake", SLOW_MS, concurrency, stream=True),
            Scenario("gateway", SLOW_MS, concurrency),
            Scenario("gateway", SLOW_MS, concurrency, stream=True),
            Scenario("chat", SLOW_MS, concurrency),
        ]
    plan.append(Scenario("bare", SLOW_MS, 256))
    # The fake server alone always runs: it is the baseline of the "added" column.
    return [s for s in plan if s.target in only or s.target == "fake"]


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(round(p * len(ordered), 6)))
    return ordered[rank - 1]


def run_load(spec: dict[str, Any], probe: Probe) -> dict[str, Any]:
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--load-worker"],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(json.dumps(spec))
    process.stdin.close()
    probe.reset_peak()
    cpu: dict[str, float] = {}
    result: dict[str, Any] = {}
    for line in process.stdout:
        if line.startswith("MEASURE"):
            probe.mark()
        elif line.startswith("END"):
            cpu = probe.read()
        elif line.startswith("{"):
            result = json.loads(line)
    process.wait()
    if not result:
        raise SystemExit("the load process returned no result")
    latencies = sorted(result["latencies"])
    statuses = result["statuses"]
    errors = {k: v for k, v in statuses.items() if k != "200"}
    cpu["client"] = result["cpu_s"]
    server_cpu_s = cpu.get("gunicorn", 0.0) + cpu.get("postgres", 0.0)
    completed = result["completed_in_window"]
    return {
        "requests": len(latencies),
        "rps": result["completed_in_window"] / spec["duration"],
        "p50": percentile(latencies, 0.50),
        "p95": percentile(latencies, 0.95),
        "p99": percentile(latencies, 0.99),
        "max": latencies[-1] if latencies else math.nan,
        "error_p50": percentile(sorted(result["error_latencies"]), 0.50),
        "errors": errors,
        "error_count": sum(errors.values()),
        "peak_rss_mb": probe.peak_kb / 1024,
        "cpu": {
            k: v if k == "machine_busy_share" else v / spec["duration"] for k, v in cpu.items()
        },
        "server_cpu_ms": 1000 * server_cpu_s / completed if completed else math.nan,
        "peak_backends": probe.peak_backends,
        "locks": probe.lock_summary(),
        "duration": spec["duration"],
    }


# -- Django side: fixtures and the per-request cost ---------------------------------------


def configure_django(args: argparse.Namespace) -> None:
    os.environ.update(server_env(args))
    os.environ.pop("MEGAHUB_TESTING", None)
    import django

    django.setup()


def setup_fixtures(fake_port: int) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework_simplejwt.tokens import AccessToken

    from ai_core.models import Brand
    from ai_openai.gateway import api_key_create
    from ai_providers.budget_models import BrandQuota
    from ai_providers.services import credential_create

    call_command("migrate", verbosity=0)
    call_command("setup_ai_infrastructure", "--include-o3", stdout=open(os.devnull, "w"))  # noqa: SIM115
    call_command(
        "create_brand",
        BRAND,
        "--name",
        "Bench",
        "--user",
        USERNAME,
        "--role",
        "admin",
        stdout=open(os.devnull, "w"),  # noqa: SIM115
    )
    brand = Brand.objects.get(slug=BRAND)
    user = get_user_model().objects.get(username=USERNAME)
    BrandQuota.objects.update_or_create(
        brand=brand,
        defaults={
            "o3_daily_budget": 10_000_000,
            "daily_budget": 10_000_000,
            "daily_reasoning_jobs_limit": 1_000_000_000,
            "monthly_token_quota": 10**12,
            "o3_monthly_token_quota": 10**12,
            "rpm_limit": 1_000_000_000,
            "tpm_limit": 2_000_000_000,
        },
    )
    credential_create(
        brand=brand,
        provider_code="openai",
        name="fake",
        api_key=UPSTREAM_KEY,
        api_base=f"http://127.0.0.1:{fake_port}/v1",
    )
    _, key = api_key_create(brand=brand, name="bench")
    return {"brand": brand, "user": user, "api_key": key, "jwt": str(AccessToken.for_user(user))}


def clear_redis(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    for pattern in ("megahub:rl:*", "megahub:circuit:*", ":1:*"):
        batch = list(client.scan_iter(pattern, count=1000))
        for start in range(0, len(batch), 500):
            client.delete(*batch[start : start + 500])


def _origin() -> str:
    """The innermost application frame of the current stack: ``module.function``."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        path = Path(frame.filename)
        try:
            relative = path.resolve().relative_to(REPO_ROOT)
        except ValueError:
            continue
        if relative.parts[0] in APP_DIRS:
            module = ".".join(relative.with_suffix("").parts)
            return f"{module}.{frame.name}"
    return "?"


def _shape(sql: str) -> str:
    """A query's verb and table(s), for the breakdown."""
    text = re.sub(r"\s+", " ", sql).strip()
    verb = text.split(" ", 1)[0].upper()
    if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK"):
        return verb
    lock = " FOR UPDATE" if " FOR UPDATE" in text else ""
    text = text.split(" FOR UPDATE", 1)[0]
    tables = []
    for match in re.finditer(r'(?:FROM|INTO|UPDATE|JOIN) "([a-z0-9_]+)"', text):
        if match.group(1) not in tables:
            tables.append(match.group(1))
    if verb == "INSERT" and " ON CONFLICT " in text:
        lock = " ON CONFLICT"
    return f"{verb} {', '.join(tables)}{lock}".strip()


def measure_request_cost(fixtures: dict[str, Any], fake_root: str) -> dict[str, Any]:
    """One request of each kind through Django's test client (after two warm-ups), with
    every SQL query, commit, health check, Redis command and provider call counted."""
    import redis
    from django.db import close_old_connections, connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    counts: Counter = Counter()
    redis_commands: list[str] = []
    statements: list[dict[str, str]] = []

    original_execute = redis.Redis.execute_command

    def counting_execute(self: Any, *args: Any, **options: Any) -> Any:
        name = str(args[0]).upper()
        if name == "EVALSHA":
            name += f" ({_lua_name(str(args[1]))})"
        redis_commands.append(f"{name} from {_origin()}")
        return original_execute(self, *args, **options)

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append({"shape": _shape(sql), "origin": _origin(), "sql": sql[:200]})
        return execute(sql, params, many, context)

    connection.ensure_connection()
    original_usable = connection.is_usable

    def counting_usable() -> bool:
        counts["health checks"] += 1
        return original_usable()

    # With the connection pool, the check is the pool's: an empty query when a thread takes
    # a connection given back more than DB_POOL_CHECK_AFTER seconds ago
    # (megahub/postgresql/base.py). Only the checks that query the server are counted.
    from psycopg_pool import ConnectionPool

    pool = getattr(connection, "pool", None)
    original_check = ConnectionPool.check_connection if pool is not None else None

    def counting_check(conn: Any) -> None:
        counts["health checks"] += 1
        original_check(conn)

    gateway = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {fixtures['api_key']}")
    chat = Client(
        HTTP_HOST="127.0.0.1",
        HTTP_AUTHORIZATION=f"Bearer {fixtures['jwt']}",
        HTTP_X_BRAND_ID=BRAND,
    )
    kinds = {
        "gateway": (gateway, "/ai/v1/chat/completions", REQUEST_BODY),
        "gateway stream": (gateway, "/ai/v1/chat/completions", STREAM_BODY),
        "chat": (chat, "/ai/openai/chat/", REQUEST_BODY),
    }

    def send(kind: str) -> int:
        client, path, body = kinds[kind]
        response = client.post(path, data=json.dumps(body), content_type="application/json")
        if response.streaming:
            b"".join(response.streaming_content)
        return response.status_code

    results = {}
    for kind in kinds:
        for _ in range(2):
            status = send(kind)
            if status != 200:
                raise SystemExit(f"{kind}: warm-up request answered {status}")
        _fake_control(fake_root, "POST", "/_fake/reset")
        counts.clear()
        redis_commands.clear()
        statements.clear()
        # What gunicorn does at request start: the persistent connection is re-checked
        # (CONN_HEALTH_CHECKS) on its first use in the request.
        close_old_connections()
        redis.Redis.execute_command = counting_execute  # type: ignore[method-assign]
        connection.is_usable = counting_usable
        if original_check is not None:
            ConnectionPool.check_connection = staticmethod(counting_check)  # type: ignore[method-assign]
        try:
            with (
                connection.execute_wrapper(wrapper),
                CaptureQueriesContext(connection) as ctx,
                pg_round_trips(pool) as pg_trips,
            ):
                status = send(kind)
        finally:
            redis.Redis.execute_command = original_execute  # type: ignore[method-assign]
            connection.is_usable = original_usable
            if original_check is not None:
                ConnectionPool.check_connection = staticmethod(original_check)  # type: ignore[method-assign]
        provider_calls = len(_fake_control(fake_root, "GET", "/_fake/requests"))
        # BEGIN / COMMIT / ROLLBACK are logged by Django but do not pass the wrappers.
        transaction_control = Counter(
            q["sql"].split()[0].upper()
            for q in ctx.captured_queries
            if q["sql"].split()[0].upper() in ("BEGIN", "COMMIT", "ROLLBACK")
        )
        proper = [q for q in statements if q["shape"] not in ("SAVEPOINT", "RELEASE", "ROLLBACK")]
        results[kind] = {
            "status": status,
            "statements": list(statements),
            "statement_count": len(proper),
            "savepoints": len(statements) - len(proper),
            "begins": transaction_control["BEGIN"],
            "commits": transaction_control["COMMIT"],
            "rollbacks": transaction_control["ROLLBACK"],
            "query_count": len(ctx.captured_queries),
            "health_checks": counts["health checks"],
            "pg_round_trips": pg_trips[0],
            "redis": list(redis_commands),
            "provider_calls": provider_calls,
        }
        log(
            f"{kind}: {len(ctx.captured_queries)} queries logged ({len(proper)} statements, "
            f"{len(statements) - len(proper)} savepoint/release, "
            f"{transaction_control['BEGIN']} BEGIN, {transaction_control['COMMIT']} COMMIT), "
            f"{counts['health checks']} health check, {len(redis_commands)} Redis commands, "
            f"{provider_calls} provider call(s)"
        )
    for kind in kinds:
        results[kind]["timing"] = time_requests(lambda kind=kind: send(kind))
        t = results[kind]["timing"]
        log(
            f"{kind}: {t['ms']:.1f} ms per request in-process, {t['sql_ms']:.1f} ms in SQL "
            f"execution, {t['redis_ms']:.1f} ms in Redis"
        )
    connection.close()  # the load must not count this process's connection
    return results


def time_requests(send: Any, count: int = 100) -> dict[str, float]:
    """Median wall time of ``count`` sequential requests, and the median time of a request
    spent executing SQL (psycopg and PostgreSQL, around each statement) and in Redis."""
    import redis
    from django.db import close_old_connections, connection

    spent = {"sql": 0.0, "redis": 0.0}
    original_execute = redis.Redis.execute_command

    def timed_execute(self: Any, *args: Any, **options: Any) -> Any:
        started = time.perf_counter()
        try:
            return original_execute(self, *args, **options)
        finally:
            spent["redis"] += time.perf_counter() - started

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            spent["sql"] += time.perf_counter() - started

    samples: dict[str, list[float]] = {"ms": [], "sql_ms": [], "redis_ms": []}
    redis.Redis.execute_command = timed_execute  # type: ignore[method-assign]
    try:
        with connection.execute_wrapper(wrapper):
            for _ in range(count):
                close_old_connections()
                spent.update(sql=0.0, redis=0.0)
                started = time.perf_counter()
                send()
                samples["ms"].append(1000 * (time.perf_counter() - started))
                samples["sql_ms"].append(1000 * spent["sql"])
                samples["redis_ms"].append(1000 * spent["redis"])
    finally:
        redis.Redis.execute_command = original_execute  # type: ignore[method-assign]
    return {name: percentile(sorted(values), 0.5) for name, values in samples.items()}


def sdk_call_ms(fake_root: str, calls: int = 100) -> float:
    """Median time of one chat completion through the ``openai`` SDK to the fake server."""
    import openai

    client = openai.OpenAI(api_key=UPSTREAM_KEY, base_url=f"{fake_root}/v1", max_retries=0)
    samples = []
    for index in range(calls + 5):
        started = time.perf_counter()
        client.chat.completions.create(**REQUEST_BODY)
        if index >= 5:
            samples.append(1000 * (time.perf_counter() - started))
    client.close()
    return percentile(sorted(samples), 0.5)


def ratelimit_probe(redis_url: str, sizes: tuple[int, ...] = (0, 5_000, 20_000)) -> dict:
    """Time the rate limiter's Lua script (rpm and tpm set) against a window already holding
    ``n`` requests (spread over the last 50 s), on a probe key."""
    import redis

    from ai_providers.ratelimit import _LUA, BUCKETS

    client = redis.Redis.from_url(redis_url)
    script = client.register_script(_LUA)
    key = "megahub:rl:bench-probe:buckets"
    window = 60.0
    timings = {}
    try:
        for size in sizes:
            client.delete(key)
            now = time.time()
            # What ``size`` earlier checks left: their counts in the buckets they fell in.
            width = window / BUCKETS
            pipe = client.pipeline(transaction=False)
            for i in range(size):
                bucket = math.floor((now - 50 + 50 * i / size) / width)
                pipe.hincrby(key, f"r{bucket}", 1)
                pipe.hincrby(key, f"t{bucket}", 26)
            pipe.execute()
            calls = 100
            started = time.perf_counter()
            for _ in range(calls):
                script(keys=[key], args=[time.time(), window, BUCKETS, 10**9, 2 * 10**9, 26])
            timings[size] = 1000 * (time.perf_counter() - started) / calls
    finally:
        client.delete(key)
    return timings


_LUA_NAMES: dict[str, str] = {}


def _lua_name(sha: str) -> str:
    if not _LUA_NAMES:
        import hashlib

        from ai_providers import circuit, ratelimit

        scripts = {
            "rate limit": ratelimit._LUA,
            "circuit acquire": circuit._LUA_ACQUIRE,
            "circuit failure": circuit._LUA_FAILURE,
            "circuit success": circuit._LUA_SUCCESS,
            "circuit state": circuit._LUA_STATE,
        }
        for name, script in scripts.items():
            _LUA_NAMES[hashlib.sha1(script.encode()).hexdigest()] = name  # noqa: S324
    return _LUA_NAMES.get(sha, "script")


def _fake_control(root: str, method: str, path: str) -> Any:
    parts = urlsplit(root)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    conn.request(method, path, body=b"{}" if method == "POST" else None)
    body = conn.getresponse().read()
    conn.close()
    data = json.loads(body) if body else None
    if isinstance(data, dict) and "requests" in data:
        return data["requests"]
    return data


def machine(database_url: str, redis_url: str) -> dict[str, str]:
    import psycopg

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    with psycopg.connect(admin_url(database_url)) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        max_connections = int(conn.execute("SHOW max_connections").fetchone()[0])
        reserved = int(conn.execute("SHOW superuser_reserved_connections").fetchone()[0])
    import redis

    redis_version = redis.Redis.from_url(redis_url).info("server")["redis_version"]
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": f"{os.cpu_count()} × {cpu}",
        "cores": str(os.cpu_count()),
        "memory": f"{memory:.0f} GiB",
        "postgres": version.split(" ")[0],
        "max_connections": str(max_connections),
        "reserved_connections": str(reserved),
        "redis": redis_version,
        "python": platform.python_version(),
        "load_before": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def count_log(log_path: Path, start: int) -> dict[str, int]:
    """Distinctive server-side failures logged since ``start`` (byte offset)."""
    with open(log_path, "rb") as handle:
        handle.seek(start)
        text = handle.read().decode(errors="replace")
    patterns = {
        "PostgreSQL 'too many clients already'": "too many clients already",
        "OperationalError answered 503": "request.database_unavailable",
        "gunicorn worker timeouts": "WORKER TIMEOUT",
        "5xx responses logged": '"status_code": 5',
    }
    return {name: text.count(pattern) for name, pattern in patterns.items() if pattern in text}


# -- rendering ------------------------------------------------------------------------------


def fmt_ms(value: float) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def render(
    info: dict[str, str],
    shape: tuple[int, int],
    args: argparse.Namespace,
    results: dict[Scenario, dict[str, Any]],
    costs: dict[str, Any],
    extras: dict[str, Any],
) -> str:
    workers, threads = shape
    base = {s.key: r for s, r in results.items() if s.target == "fake"}
    command = ".venv/bin/python benchmarks/gateway_overhead.py"
    if args.workers or args.threads:
        command += f" --workers {workers} --threads {threads}"
    defaults = {"duration": 10.0, "slow_duration": 15.0, "warmup": 2.0}
    for name, default in defaults.items():
        if getattr(args, name) != default:
            command += f" --{name.replace('_', '-')} {getattr(args, name):g}"
    lines = [
        SECTION_TITLE,
        "",
        f"Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} on {info['cpu']}, "
        f"{info['memory']} RAM (load average before the run: {info['load_before']}); "
        f"PostgreSQL {info['postgres']} (max_connections {info['max_connections']}), "
        f"Redis {info['redis']}, Python {info['python']}, all on the same machine as the "
        f"server, the fake upstream and the load generator. Command: `{command}`.",
        "",
        f"Server: gunicorn with the repo's `gunicorn.conf.py` (gthread, **{workers} workers × "
        f"{threads} threads** = {workers * threads} requests in flight at most, keep-alive "
        "5 s), `megahub.settings` with DEBUG=false, SECURE_SSL_REDIRECT=false, "
        f"LOG_LEVEL=WARNING, PostgreSQL with CONN_MAX_AGE={info['conn_max_age']}, "
        f"CONN_HEALTH_CHECKS={info['conn_health_checks']} and connection pool "
        f"{info['pool']}, reference caches for {info['refcache']} s, Redis "
        f"({args.redis_url}) for the rate limiter, the circuit breaker and the cache. "
        "Brand `bench` with a BrandQuota no request reaches (rpm/tpm limits set very high, "
        "so the Redis rate-limit script runs on every request), one OpenAI credential "
        "pointing at the fake server (`python -m ai_core.fake_openai --latency-ms L`, one "
        "asyncio process), no Idempotency-Key, no response cache.",
        "",
        "Request: `gpt-4o`, one short user message, `max_tokens: 16` (streamed: plus "
        "`stream: true, stream_options.include_usage`). The gateway is called with the "
        "`mh-` API key; `POST /ai/openai/chat/` with a JWT and `X-Brand-ID`. The fake "
        "server alone is called with the same body at `/v1/chat/completions`, and so is the "
        "bare Django relay (benchmarks/bare_relay.py, the floor: a view that only relays "
        "through the `openai` SDK, served by its own gunicorn with the same configuration).",
        "",
        "Load: a separate process (asyncio, raw-socket HTTP/1.1 keep-alive connections, one "
        f"request in flight per connection), {args.warmup:.0f} s warm-up then a "
        f"{args.duration:.0f} s window (instant upstream) or {args.slow_duration:.0f} s "
        f"(upstream answering after {SLOW_MS} ms). Latency: from writing the request to "
        "the last byte of the response (the whole SSE stream when streamed), for the 200 "
        "responses to requests started in the window, nearest-rank percentiles; *RPS*: "
        "200 responses completed in the window / its length; *errors*: every other outcome "
        "of a request started in the window, by status, with their own p50. *Added* = p50 "
        "minus the fake server's own p50 at the same concurrency, upstream latency and "
        "streaming. Peak RSS: sum of VmRSS over the gunicorn master and workers, sampled "
        "every 100 ms. CPU: cores used during the window by gunicorn / this database's "
        f"PostgreSQL backends / the load process (of {info['cores']}); *busy* is the whole "
        "machine's; *server CPU ms/req* = (gunicorn + PostgreSQL CPU time) / 200 responses "
        "completed in the window. *Lock waits*: sessions of this database waiting on a "
        "lock, on average over samples taken every 200 ms in the window. *Other*: cores used "
        "meanwhile by processes outside the benchmark (the machine is shared). Everything "
        f"shares the {info['cores']} cores: repeated runs of the same scenario move by about "
        "±20%. *Peak PG conns*: this database's backends, sampled every 300 ms.",
        "",
        "| target | upstream | conc. | 200s | RPS (200s) | p50 ms | p95 ms | p99 ms | added p50 ms "
        "| errors | server CPU ms/req | peak PG conns | lock waits | peak RSS MB "
        "| CPU gunicorn / pg / client | busy (other) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
        "| --- | --- |",
    ]
    for scenario, r in results.items():
        added = "–"
        if scenario.target != "fake" and scenario.key in base:
            added = f"{r['p50'] - base[scenario.key]['p50']:+.1f}"
            if r["error_count"] > 0.01 * max(1, r["requests"]):
                added = "n/a (errors)"
        errors = "0"
        if r["errors"]:
            errors = ", ".join(f"{k}: {v:,}" for k, v in sorted(r["errors"].items()))
            errors += f" (p50 {fmt_ms(r['error_p50'])} ms)"
        upstream = f"{scenario.latency_ms} ms" + (", stream" if scenario.stream else "")
        proxied = scenario.target != "fake"
        rss = f"{r['peak_rss_mb']:.0f}" if proxied else "–"
        server_cpu = fmt_ms(r["server_cpu_ms"]) if proxied else "–"
        # The bare relay uses no database: the probe's counts are the idle API server's.
        uses_db = scenario.target in ("gateway", "chat")
        backends = str(r["peak_backends"]) if uses_db else "–"
        waits = f"{r['locks']['waiting']:.1f}" if uses_db else "–"
        cpu = r["cpu"]
        lines.append(
            f"| {TARGET_LABELS[scenario.target]} | {upstream} | {scenario.concurrency} | "
            f"{r['requests']:,} | {r['rps']:,.0f} | {fmt_ms(r['p50'])} | {fmt_ms(r['p95'])} | "
            f"{fmt_ms(r['p99'])} | {added} | {errors} | {server_cpu} | {backends} | {waits} | "
            f"{rss} | "
            f"{cpu.get('gunicorn', 0):.2f} / {cpu.get('postgres', 0):.2f} / "
            f"{cpu.get('client', 0):.2f} | {cpu.get('machine_busy_share', 0):.0%} "
            f"({other_cpu(cpu, int(info['cores'])):.2f}) |"
        )
    server_logs = [(s, r["server_log"]) for s, r in results.items() if r.get("server_log")]
    if server_logs:
        lines += ["", "Server-side failures logged by gunicorn/Django during a run:", ""]
        for scenario, counts in server_logs:
            text = ", ".join(f"{k} ×{v}" for k, v in counts.items())
            lines.append(
                f"- {TARGET_LABELS[scenario.target]}, {scenario.latency_ms} ms upstream"
                f"{', stream' if scenario.stream else ''}, {scenario.concurrency} clients: {text}"
            )
    lines += ["", *render_targets(results, base), ""]
    lines += [*render_analysis(info, shape, results, costs, extras), "", *render_costs(costs)]
    return "\n".join(lines) + "\n"


def other_cpu(cpu: dict[str, float], cores: int) -> float:
    """Cores used during the window by processes outside the benchmark (other work on the
    machine): the machine's busy time minus what the benchmark's processes used."""
    ours = sum(v for k, v in cpu.items() if k != "machine_busy_share")
    return max(0.0, cpu.get("machine_busy_share", 0.0) * cores - ours)


def _find(results: dict[Scenario, dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for scenario, r in results.items():
        if all(getattr(scenario, k) == v for k, v in match.items()):
            return r
    return None


def render_targets(
    results: dict[Scenario, dict[str, Any]], base: dict[tuple[int, int, bool], Any]
) -> list[str]:
    lines = [
        "Against the issue's targets:",
        "",
        "| target | measured | verdict |",
        "| --- | --- | --- |",
    ]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    gw1 = _find(results, target="gateway", latency_ms=0, concurrency=1)
    if gw1 and (0, 1, False) in base:
        added = gw1["p50"] - base[(0, 1, False)]["p50"]
        lines.append(
            f"| `/ai/v1/chat/completions` p50 overhead at concurrency 1 ≤ {OVERHEAD_TARGET_MS:.0f}"
            f" ms | {added:.1f} ms (p50 {gw1['p50']:.1f} vs {base[(0, 1, False)]['p50']:.2f} ms "
            f"alone) | {verdict(added <= OVERHEAD_TARGET_MS)} |"
        )
    gw8 = _find(results, target="gateway", latency_ms=0, concurrency=8)
    if gw8:
        ok = gw8["rps"] >= RPS_C8_TARGET and gw8["error_count"] == 0
        lines.append(
            f"| ≥ {RPS_C8_TARGET:.0f} req/s at concurrency 8, 0 errors | {gw8['rps']:.0f} req/s, "
            f"{gw8['error_count']} errors | {verdict(ok)} |"
        )
    for stream in (False, True):
        slow = _find(results, target="gateway", latency_ms=SLOW_MS, concurrency=256, stream=stream)
        if slow:
            ok = (
                slow["rps"] >= RPS_C256_TARGET
                and slow["p95"] < P95_C256_TARGET_MS
                and slow["error_count"] == 0
            )
            lines.append(
                f"| 1 s upstream, 256 clients{', streamed' if stream else ''}: ≥ "
                f"{RPS_C256_TARGET:.0f} req/s and p95 < {P95_C256_TARGET_MS / 1000:.1f} s | "
                f"{slow['rps']:.0f} successful req/s (p95 {slow['p95'] / 1000:.2f} s), "
                f"{slow['error_count']:,} errors | {verdict(ok)} |"
            )
    return lines


@contextmanager
def pg_round_trips(pool: Any) -> Any:
    """Count the round trips to PostgreSQL in the block, on every connection of this
    process's pool (a request takes one, gives it back before the provider call and takes
    one again): libpq's protocol trace of each, where each turn from messages sent (F) to
    messages received (B) is one round trip. Statements sent together in pipeline mode
    count once."""
    from django.db import connection
    from psycopg import pq

    count = [0]
    conns = list(pool._pool) if pool is not None else []
    if connection.connection is not None:
        conns.append(connection.connection)
    traces = []
    for conn in conns:
        trace = tempfile.TemporaryFile()  # noqa: SIM115 - closed in finally
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        traces.append((conn, trace))
    try:
        yield count
    finally:
        for conn, trace in traces:
            conn.pgconn.untrace()
            trace.seek(0)
            sides = [line[:1] for line in trace.read().splitlines() if line[:1] in (b"F", b"B")]
            count[0] += sum(1 for pair in itertools.pairwise(sides) if pair == (b"F", b"B"))
            trace.close()


def round_trips(cost: dict[str, Any]) -> int:
    """Every wait on another process: PostgreSQL's round trips (as traced), Redis commands
    and provider calls."""
    return cost["pg_round_trips"] + len(cost["redis"]) + cost["provider_calls"]


def render_analysis(
    info: dict[str, str],
    shape: tuple[int, int],
    results: dict[Scenario, dict[str, Any]],
    costs: dict[str, Any],
    extras: dict[str, Any],
) -> list[str]:
    """Where the time goes, from the measured figures."""
    probe_ms = extras.get("ratelimit_ms", {})
    workers, threads = shape
    cores = int(info["cores"])
    lines = ["### Why", ""]
    c1 = _find(results, target="gateway", latency_ms=0, concurrency=1)
    c8 = _find(results, target="gateway", latency_ms=0, concurrency=8)
    gateway = costs.get("gateway")
    if c1 and c8 and gateway:
        duration = c8["duration"]
        done = max(1.0, c8["rps"] * duration)
        gunicorn_ms = 1000 * c8["cpu"].get("gunicorn", 0.0) * duration / done
        postgres_ms = 1000 * c8["cpu"].get("postgres", 0.0) * duration / done
        ceiling = cores * 1000 / max(0.001, gunicorn_ms + postgres_ms)
        lines.append(
            f"- **CPU is the first limit.** Through the gateway one request costs about "
            f"{gunicorn_ms:.0f} ms of CPU in gunicorn plus {postgres_ms:.0f} ms in PostgreSQL "
            f"(concurrency 8); on {cores} cores that caps the server near "
            f"{ceiling:.0f} requests/s at best, whatever the concurrency, workers or threads "
            "(with many requests in flight it gets less: see the hot rows below). The "
            f"targets need ≤ {cores * 1000 / RPS_C8_TARGET:.1f} ms (350 req/s) and ≤ "
            f"{cores * 1000 / RPS_C256_TARGET:.0f} ms (200 req/s) of server CPU per request. "
            f"At concurrency 1 the p50 ({c1['p50']:.0f} ms) is that same CPU work done "
            "serially: the fake server alone answers in "
            f"{_find(results, target='fake', latency_ms=0, concurrency=1)['p50']:.2f} ms, and "
            f"the same call through the `openai` SDK costs {extras.get('sdk_ms', math.nan):.1f}"
            " ms in-process."
        )
        bare1 = _find(results, target="bare", latency_ms=0, concurrency=1)
        bare8 = _find(results, target="bare", latency_ms=0, concurrency=8)
        bare256 = _find(results, target="bare", latency_ms=SLOW_MS, concurrency=256)
        fake1 = _find(results, target="fake", latency_ms=0, concurrency=1)
        if bare1 and bare8 and fake1:
            bare_ms = 1000 * bare8["cpu"].get("gunicorn", 0.0) / max(0.001, bare8["rps"])
            lines.append(
                "- **The floor on this machine.** A bare Django view that only relays the "
                "call through the `openai` SDK (benchmarks/bare_relay.py: no middleware, no "
                "authentication, no database, same gunicorn configuration) adds "
                f"{bare1['p50'] - fake1['p50']:.1f} ms at concurrency 1 and serves "
                f"{bare8['rps']:.0f} req/s at concurrency 8 here, for {bare_ms:.1f} ms of "
                "gunicorn CPU per request"
                + (
                    f"; with the 1 s upstream and 256 clients, {bare256['rps']:.0f} req/s "
                    f"(p95 {bare256['p95'] / 1000:.2f} s)"
                    if bare256
                    else ""
                )
                + ". The issue measured such a view at about +3 ms and 650 req/s on its "
                "machine. The gateway's own work (authentication, validation, rate limit, "
                "budget reservation and settlement, job, attempt and usage rows) costs "
                f"{gunicorn_ms - bare_ms:.1f} ms of gunicorn CPU per request more, plus "
                f"{postgres_ms:.1f} ms in PostgreSQL."
            )
        timing = gateway.get("timing", {})
        python_ms = timing.get("ms", 0.0) - timing.get("sql_ms", 0.0) - timing.get("redis_ms", 0.0)
        lines.append(
            f"- **What is left per request.** {gateway['statement_count']} SQL statements, "
            f"{gateway['savepoints']} savepoint commands and {gateway['commits']} transactions "
            f"({round_trips(gateway)} round trips with Redis and the provider; the table "
            "below lists them): the job's INSERT and the reservation (one transaction), then "
            "the completion (one transaction: the job's UPDATE, the run's attempt row, the "
            "OpenAI job row, the usage record and its daily rollup, the reservation and the "
            "budget counters settled). Those are the figures of a request alone; under load the "
            "jobs created together in a process share one transaction, and so do the "
            "completions that end together (group commits: bulk INSERTs, one UPDATE per "
            "counter and one upsert per rollup row for all)."
            + (
                f" In-process (Django's test client, one thread, median of 100) a gateway "
                f"request takes {timing['ms']:.1f} ms: {timing['sql_ms']:.1f} ms inside SQL "
                f"execution (psycopg + PostgreSQL), {timing['redis_ms']:.1f} ms in Redis, "
                f"and {python_ms:.1f} ms of Python around them — Django and DRF, "
                "validation and token counting, building and binding the writes, and the "
                "`openai` SDK's HTTP call."
                if timing
                else ""
            )
        )
    contended = [
        (label, r)
        for label, r in (
            ("8 clients", _find(results, target="gateway", latency_ms=0, concurrency=8)),
            ("32 clients", _find(results, target="gateway", latency_ms=0, concurrency=32)),
            (
                "256 clients with a 1 s upstream",
                _find(results, target="gateway", latency_ms=SLOW_MS, concurrency=256),
            ),
        )
        if r is not None
    ]
    if contended and any(r["locks"]["waits"] for _, r in contended):
        worst = max(contended, key=lambda item: item[1]["locks"]["waiting"])[1]["locks"]
        waits = ", ".join(f"`{shape}` {n:.1f}" for shape, n in worst["waits"].items())
        observed = "; ".join(
            f"{label}: {r['locks']['waiting']:.1f} waiting on a lock, "
            f"{r['locks']['idle_in_transaction']:.1f} idle in a transaction, machine "
            f"{r['cpu'].get('machine_busy_share', 0):.0%} busy"
            for label, r in contended
        )
        lines.append(
            "- **One brand's requests queue on its hot rows.** Every request of a brand "
            "updates the same budget counter rows (reserve, then settle) and the same daily "
            "rollup row, and holds those row locks until its transaction commits (the "
            "reservation and the completion write them last to shorten that, and the group "
            "commits write them once per batch of creations or completions). Sessions of "
            "the database on "
            f"average, through the gateway — {observed}. Most waited-on statements (sessions "
            f"on average): {waits}."
        )
    if probe_ms:
        sizes = sorted(probe_ms)
        lines.append(
            "- **The rate limiter costs the same at any traffic.** Its Lua script reads the "
            "brand's ≤ 60 one-second buckets: "
            + ", ".join(f"{probe_ms[n]:.2f} ms with {n:,} requests in the window" for n in sizes)
            + " (one call, round trip included, measured on a probe key)."
        )
    slow = [
        (s, r)
        for s, r in results.items()
        if s.target in ("gateway", "chat") and s.latency_ms == SLOW_MS
    ]
    if slow:
        peak = max(r["peak_backends"] for _, r in slow)
        failed = {
            f"{s.concurrency} clients{', streamed' if s.stream else ''} ({s.target})": r
            for s, r in slow
            if r["error_count"]
        }
        refused = "; ".join(
            f"{label}: {r['error_count']:,} of {r['error_count'] + r['requests']:,} ("
            + ", ".join(f"{status} ×{n:,}" for status, n in sorted(r["errors"].items()))
            + ")"
            for label, r in failed.items()
        )
        in_flight = workers * threads
        lines.append(
            f"- **Threads and PostgreSQL connections.** {workers} workers × {threads} threads "
            f"hold at most {in_flight} requests at once, so with a {SLOW_MS / 1000:.0f} s "
            f"upstream the server cannot exceed {in_flight * 1000 / SLOW_MS:.0f} req/s even "
            "with no CPU cost at all. Connections come from a pool per worker and go back to "
            "it before the provider call (megahub.db.release_connection), so the threads "
            f"waiting on the upstream hold none; PostgreSQL here allows "
            f"{info['max_connections']} connections: at most {peak} of this database's "
            "backends were seen at once with a 1 s upstream"
            + (". Failed requests: " + refused + "." if refused else ", none refused.")
        )
    return lines


def render_costs(costs: dict[str, Any]) -> list[str]:
    if not costs:
        return []
    lines = [
        "### What one request costs",
        "",
        "Counted in-process through Django's test client on the same PostgreSQL database and "
        "Redis, after two warm-up requests. *Statements*: SELECT/INSERT/UPDATE; "
        "*transactions*: BEGIN + COMMIT pairs of `atomic` blocks (psycopg sends each as its "
        "own command); *health check*: a connection check that queried the server (with the "
        "pool: its empty query when the request takes a connection given back more than "
        "`DB_POOL_CHECK_AFTER` = 0.5 s before, at the first query or after the provider "
        "call; without it: Django's `SELECT 1` on a persistent connection's first use in each "
        "request); *PostgreSQL round trips*: counted from libpq's protocol trace of the "
        "pool's connections (each turn from sending to receiving), so statements sent together "
        "in pipeline mode (the completion's writes: `megahub.fastsql.pipelined`) count once.",
        "",
        "| request | SQL statements | SAVEPOINT + RELEASE | transactions (BEGIN + COMMIT) "
        "| health check | PostgreSQL round trips | Redis commands | provider calls "
        "| round trips in all |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, c in costs.items():
        lines.append(
            f"| {kind} | {c['statement_count']} | {c['savepoints']} | "
            f"{c['commits']} ({c['begins']} + {c['commits']}) | {c['health_checks']} | "
            f"{c['pg_round_trips']} | {len(c['redis'])} | {c['provider_calls']} | "
            f"**{round_trips(c)}** |"
        )
    gateway = costs.get("gateway")
    if gateway:
        lines += [
            "",
            "The non-streamed gateway request's statements in order, with the application "
            "function that issued each (consecutive identical rows merged):",
            "",
            "| # | statement | issued by | × |",
            "| --- | --- | --- | --- |",
        ]
        rows: list[list[Any]] = []
        for q in gateway["statements"]:
            if q["shape"] in ("SAVEPOINT", "RELEASE"):
                continue
            if rows and rows[-1][0] == q["shape"] and rows[-1][1] == q["origin"]:
                rows[-1][2] += 1
            else:
                rows.append([q["shape"], q["origin"], 1])
        for number, (shape, origin, times) in enumerate(rows, start=1):
            lines.append(f"| {number} | `{shape}` | `{origin}` | {times} |")
        by_table = Counter(
            q["shape"] for q in gateway["statements"] if q["shape"] not in ("SAVEPOINT", "RELEASE")
        )
        redis_counts = Counter(gateway["redis"])
        lines += [
            "",
            "By kind: "
            + ", ".join(f"`{shape}` ×{n}" for shape, n in by_table.most_common())
            + ". Redis: "
            + (", ".join(f"`{c}` ×{n}" for c, n in redis_counts.items()) or "none")
            + ".",
        ]
    return lines


def write_doc(section: str, title: str = SECTION_TITLE, before: str | None = None) -> None:
    """Replace the section headed ``title`` in docs/performance.md with ``section``; a new
    one goes before the heading ``before`` if given and present, else at the end."""
    text = DOC_PATH.read_text() if DOC_PATH.exists() else "# Performance\n"
    start = text.find(title)
    anchor = text.find(f"\n{before}") if before else -1
    if start == -1 and anchor != -1:
        text = text[: anchor + 1] + section + "\n" + text[anchor + 1 :]
    elif start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        following = text.find("\n## ", start + len(title))
        end = len(text) if following == -1 else following + 1
        text = text[:start] + section + ("\n" + text[end:] if following != -1 else "")
    DOC_PATH.write_text(text)


# -- main -----------------------------------------------------------------------------------


def run_scenarios(
    args: argparse.Namespace,
    fixtures: dict[str, Any],
    env: dict[str, str],
    fake_port: int,
    log_path: Path,
) -> dict[Scenario, dict[str, Any]]:
    api_port, bare_port = free_port(), free_port()
    plan = scenarios(set(args.only.split(",")))
    results: dict[Scenario, dict[str, Any]] = {}
    headers = {
        "fake": {"Authorization": f"Bearer {UPSTREAM_KEY}"},
        "gateway": {"Authorization": f"Bearer {fixtures['api_key']}"},
        "chat": {"Authorization": f"Bearer {fixtures['jwt']}", "X-Brand-ID": BRAND},
        "bare": {},
    }
    paths = {
        "fake": "/v1/chat/completions",
        "gateway": "/ai/v1/chat/completions",
        "chat": "/ai/openai/chat/",
        "bare": "/v1/chat/completions",
    }
    bare_env = {
        **env,
        "DJANGO_SETTINGS_MODULE": "benchmarks.bare_relay",
        "BARE_RELAY_UPSTREAM": f"http://127.0.0.1:{fake_port}/v1",
        "BARE_RELAY_KEY": UPSTREAM_KEY,
    }
    for latency in sorted({s.latency_ms for s in plan}):
        here = [s for s in plan if s.latency_ms == latency]
        fake = start_fake(fake_port, latency)
        servers: dict[str, subprocess.Popen[bytes]] = {}
        probes: dict[str, Probe] = {}
        try:
            # MEGAHUB's server for the gateway and the chat API; the bare relay's own
            # (benchmarks/bare_relay.py, same gunicorn.conf.py) for the reference rows.
            for name, port, server_env_, app in (
                ("megahub", api_port, env, "megahub.wsgi"),
                ("bare", bare_port, bare_env, "django.core.wsgi:get_wsgi_application()"),
            ):
                if name == "megahub" or any(s.target == "bare" for s in here):
                    servers[name] = start_gunicorn(server_env_, port, log_path, app)
                    probes[name] = Probe(servers[name].pid, fake.pid, args.database_url)
                    log(
                        f"upstream {latency} ms: {name} gunicorn pid {servers[name].pid}, "
                        f"RSS {probes[name].gunicorn_rss_kb()} kB"
                    )
            for scenario in here:
                slow = latency > 0
                server_name = "bare" if scenario.target == "bare" else "megahub"
                probe = probes[server_name]
                ports = {"fake": fake_port, "bare": bare_port}
                spec = {
                    "host": "127.0.0.1",
                    "port": ports.get(scenario.target, api_port),
                    "path": paths[scenario.target],
                    "headers": headers[scenario.target],
                    "body": STREAM_BODY if scenario.stream else REQUEST_BODY,
                    "concurrency": scenario.concurrency,
                    "warmup": args.warmup + (1.0 if slow else 0.0),
                    "duration": args.slow_duration if slow else args.duration,
                    "timeout": 60.0,
                }
                log_offset = log_path.stat().st_size
                result = run_load(spec, probe)
                time.sleep(0.5)
                result["server_log"] = (
                    count_log(log_path, log_offset) if scenario.target != "fake" else {}
                )
                results[scenario] = result
                log(
                    f"{scenario.label:15s} {latency:5d} ms c{scenario.concurrency:<4d} "
                    f"{result['rps']:8.1f} req/s  p50 {result['p50']:8.2f}  "
                    f"p95 {result['p95']:8.2f}  p99 {result['p99']:8.2f} ms  "
                    f"errors {result['errors'] or 0}  RSS {result['peak_rss_mb']:.0f} MB  "
                    f"cpu { ({k: round(v, 2) for k, v in result['cpu'].items()}) }"
                    + (f"  log {result['server_log']}" if result["server_log"] else "")
                )
                time.sleep(1.0)
        finally:
            for probe in probes.values():
                probe.close()
            for server in servers.values():
                stop(server)
            stop(fake)
    return results


def main() -> None:
    args = parse_args()
    if args.load_worker:
        load_worker()
        return
    args.secret_key = secrets.token_urlsafe(50)
    args.jwt_key = secrets.token_urlsafe(50)
    args.fernet_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    started = time.monotonic()
    info = machine(args.database_url, args.redis_url)
    log(f"machine {info}")
    create_database(args.database_url)
    env = server_env(args)
    shape = gunicorn_shape(env)
    fake_port = free_port()
    log_path = Path(tempfile.gettempdir()) / f"gateway_overhead-{os.getpid()}.log"
    fake = None
    try:
        configure_django(args)
        from django.conf import settings

        database = settings.DATABASES["default"]
        info["conn_max_age"] = str(database.get("CONN_MAX_AGE"))
        info["conn_health_checks"] = str(database.get("CONN_HEALTH_CHECKS"))
        pool = database.get("OPTIONS", {}).get("pool")
        info["pool"] = (
            f"{pool.get('min_size', '?')}–{pool.get('max_size', '?')} connections per worker"
            if isinstance(pool, dict)
            else str(pool or "off")
        )
        info["refcache"] = str(settings.AI_REFERENCE_CACHE_SECONDS)
        clear_redis(args.redis_url)
        fixtures = setup_fixtures(fake_port)
        fake = start_fake(fake_port, 0)
        costs = measure_request_cost(fixtures, f"http://127.0.0.1:{fake_port}")
        extras = {
            "ratelimit_ms": ratelimit_probe(args.redis_url),
            "sdk_ms": sdk_call_ms(f"http://127.0.0.1:{fake_port}"),
        }
        log(f"rate-limit script ms per call by window size: {extras['ratelimit_ms']}")
        log(f"openai SDK call to the fake server: {extras['sdk_ms']:.2f} ms")
        stop(fake)
        fake = None
        results = run_scenarios(args, fixtures, env, fake_port, log_path)
    finally:
        stop(fake)
        from django.db import connection

        connection.close()
        clear_redis(args.redis_url)
        if not args.keep_db:
            drop_database(args.database_url)
    section = render(info, shape, args, results, costs, extras)
    print(section)
    log(f"server log: {log_path}; total {time.monotonic() - started:.0f} s")
    if not args.no_docs:
        write_doc(section)
        log(f"wrote {DOC_PATH.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()

"""Server models for a relay through the ``openai`` SDK: threaded WSGI workers vs an ASGI
server with an async view and the SDK's async client.

The gateway issue allows either "an ASGI server with async views and the SDK's async client
on the hot paths, or threaded workers sized for it". MEGAHUB runs gunicorn's threaded
workers (``gunicorn.conf.py``). This benchmark measures the floor of each model on the
machine that runs it, with the same do-nothing relay (``benchmarks/bare_relay.py``: no
middleware, no database, no Redis), so the choice rests on figures:

- ``gthread``: gunicorn, ``gunicorn.conf.py`` (2 workers x 128 threads), a Django sync
  view calling ``openai.OpenAI`` (the gateway's model);
- ``django-asgi``: uvicorn (uvloop, httptools), 2 workers, a Django ``async def`` view
  awaiting ``openai.AsyncOpenAI``;
- ``raw-asgi``: uvicorn, 2 workers, the same async relay as a plain ASGI callable, no
  Django: what the server and the async client cost without Django's ASGI handler.

Each runs against the bundled fake server (instant, and answering after 1 s) and is
driven by ``gateway_overhead.py``'s load process (asyncio, raw-socket keep-alive
connections, one request in flight each). It writes the "Server models" section of
docs/performance.md.

Usage::

    .venv/bin/python benchmarks/server_models.py [--rounds 3] [--duration 10]
        [--slow-duration 15] [--no-docs]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway_overhead as bench  # noqa: E402 - a sibling script, importable from here

REPO_ROOT = bench.REPO_ROOT
VENV_BIN = REPO_ROOT / ".venv" / "bin"
SECTION_TITLE = "## Server models for the relay (benchmarks/server_models.py)"
UPSTREAM_KEY = "sk-bench-server-models"

SERVERS: dict[str, dict[str, Any]] = {
    "gthread": {
        "label": "gunicorn gthread 2 × 128, Django sync view, `OpenAI`",
        "command": [
            str(VENV_BIN / "gunicorn"),
            "django.core.wsgi:get_wsgi_application()",
            "-c",
            str(REPO_ROOT / "gunicorn.conf.py"),
            "-b",
        ],
        # Explicit: without REDIS_URL the config would start one worker (gunicorn.conf.py).
        "env": {"GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "128"},
    },
    "django-asgi": {
        "label": "uvicorn 2 workers, Django `async def` view, `AsyncOpenAI`",
        "command": [
            str(VENV_BIN / "uvicorn"),
            "--factory",
            "django.core.asgi:get_asgi_application",
        ],
        "env": {"BARE_RELAY_ASYNC": "1"},
    },
    "raw-asgi": {
        "label": "uvicorn 2 workers, plain ASGI callable (no Django), `AsyncOpenAI`",
        "command": [str(VENV_BIN / "uvicorn"), "benchmarks.bare_relay:raw_asgi"],
        "env": {},
    },
}
# (upstream latency ms, concurrency)
SCENARIOS = [(0, 1), (0, 8), (0, 32), (1000, 256)]


def server_command(name: str, port: int) -> list[str]:
    command = list(SERVERS[name]["command"])
    if name == "gthread":
        return [*command, f"127.0.0.1:{port}"]
    return [
        *command,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "2",
        "--log-level",
        "warning",
        "--no-access-log",
    ]


def start_server(name: str, port: int, fake_port: int, log_file: Any) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchmarks.bare_relay",
        "BARE_RELAY_UPSTREAM": f"http://127.0.0.1:{fake_port}/v1",
        "BARE_RELAY_KEY": UPSTREAM_KEY,
        "PYTHONPATH": str(REPO_ROOT),
        **SERVERS[name]["env"],
    }
    process = subprocess.Popen(
        server_command(name, port), cwd=REPO_ROOT, env=env, stdout=log_file, stderr=log_file
    )
    return bench.wait_healthy(process, port, f"{name} did not start; see {log_file.name}")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a server's master and its worker processes."""
    return bench.cpu_s(pid) + sum(bench.cpu_s(child) for child in bench.children(pid))


def run_load(spec: dict[str, Any], server_pid: int) -> dict[str, Any]:
    """One scenario through ``gateway_overhead.py --load-worker``; the server tree's CPU
    is read at the load process's MEASURE and END marks."""
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "gateway_overhead.py"), "--load-worker"],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(json.dumps(spec))
    process.stdin.close()
    cpu_start = cpu_end = 0.0
    result: dict[str, Any] = {}
    for line in process.stdout:
        if line.startswith("MEASURE"):
            cpu_start = tree_cpu_s(server_pid)
        elif line.startswith("END"):
            cpu_end = tree_cpu_s(server_pid)
        elif line.startswith("{"):
            result = json.loads(line)
    process.wait()
    if not result:
        raise SystemExit("the load process returned no result")
    latencies = sorted(result["latencies"])
    completed = result["completed_in_window"]
    errors = {k: v for k, v in result["statuses"].items() if k != "200"}
    return {
        "rps": completed / spec["duration"],
        "p50": bench.percentile(latencies, 0.50),
        "p95": bench.percentile(latencies, 0.95),
        "p99": bench.percentile(latencies, 0.99),
        "errors": sum(errors.values()),
        "server_cpu_ms": 1000 * (cpu_end - cpu_start) / completed if completed else float("nan"),
        "server_cores": (cpu_end - cpu_start) / spec["duration"],
    }


Results = dict[tuple[str, int, int], list[dict[str, Any]]]


def run(args: argparse.Namespace) -> Results:
    """Every server and scenario, ``args.rounds`` times over (each round starts the servers
    again, so how the clients' connections fall on the two workers is drawn again)."""
    fake_port, port = bench.free_port(), bench.free_port()
    results: Results = {}
    log_path = Path(tempfile.gettempdir()) / f"server_models-{os.getpid()}.log"
    with open(log_path, "ab") as log_file:
        for _round, latency in itertools.product(
            range(args.rounds), sorted({latency for latency, _ in SCENARIOS})
        ):
            fake = bench.start_fake(fake_port, latency)
            try:
                for name in ("fake", *SERVERS):
                    server = (
                        None if name == "fake" else start_server(name, port, fake_port, log_file)
                    )
                    try:
                        for scenario_latency, concurrency in SCENARIOS:
                            if scenario_latency != latency:
                                continue
                            slow = latency > 0
                            spec = {
                                "host": "127.0.0.1",
                                "port": fake_port if server is None else port,
                                "path": "/v1/chat/completions",
                                "headers": {"Authorization": f"Bearer {UPSTREAM_KEY}"},
                                "body": bench.REQUEST_BODY,
                                "concurrency": concurrency,
                                "warmup": args.warmup + (1.0 if slow else 0.0),
                                "duration": args.slow_duration if slow else args.duration,
                                "timeout": 60.0,
                            }
                            result = run_load(spec, fake.pid if server is None else server.pid)
                            results.setdefault((name, latency, concurrency), []).append(result)
                            bench.log(
                                f"{name:12s} {latency:5d} ms c{concurrency:<4d} "
                                f"{result['rps']:8.1f} req/s  p50 {result['p50']:8.2f}  "
                                f"p95 {result['p95']:8.2f} ms  errors {result['errors']}  "
                                f"server CPU {result['server_cpu_ms']:.2f} ms/req"
                            )
                            time.sleep(1.0)
                    finally:
                        bench.stop(server)
            finally:
                bench.stop(fake)
    return results


def median(values: list[float]) -> float:
    return statistics.median(values)


def render(results: Results, started: datetime, rounds: int) -> str:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    versions = {}
    for package in ("django", "openai", "gunicorn", "uvicorn", "uvloop"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:  # noqa: BLE001 - a missing package is reported as such
            versions[package] = "not installed"
    lines = [
        SECTION_TITLE,
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC on {os.cpu_count()} × {cpu}, Python "
        f"{platform.python_version()}, "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + "; the fake server, the server and the load process on the same machine. Command: "
        "`.venv/bin/python benchmarks/server_models.py`.",
        "",
        "The same do-nothing relay (`benchmarks/bare_relay.py`: one view, no middleware, no "
        "database, no Redis) under each server model the issue allows. Request and load as "
        "in the gateway benchmark (`gpt-4o`, `max_tokens: 16`; keep-alive connections, one "
        "request in flight each; 2 s warm-up, then a 10 s window, or 15 s with the 1 s "
        "upstream). *Added* = p50 minus the fake server's own p50 in the same scenario; "
        "*server CPU* = CPU time of the server's processes in the window / responses. "
        f"Each scenario ran {rounds} times, each time on freshly started servers: the table "
        "gives the median of the runs, and the RPS of every run (a keep-alive client stays on "
        "the worker that accepted it, so how the connections fall on the two workers moves "
        "a run's figures a lot).",
        "",
        "| server | upstream | conc. | RPS (median) | RPS of each run | p50 ms | p95 ms | "
        "added p50 ms | errors | server CPU ms/req |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for latency, concurrency in SCENARIOS:
        fake = results.get(("fake", latency, concurrency))
        for name in ("fake", *SERVERS):
            runs = results.get((name, latency, concurrency))
            if not runs:
                continue
            label = "fake server alone" if name == "fake" else SERVERS[name]["label"]
            p50 = median([r["p50"] for r in runs])
            added = (
                "–"
                if name == "fake" or not fake
                else f"+{p50 - median([r['p50'] for r in fake]):.1f}"
            )
            cpu_ms = "–" if name == "fake" else f"{median([r['server_cpu_ms'] for r in runs]):.1f}"
            lines.append(
                f"| {label} | {latency} ms | {concurrency} | "
                f"{median([r['rps'] for r in runs]):,.0f} | "
                f"{', '.join(format(r['rps'], ',.0f') for r in runs)} | {p50:.1f} | "
                f"{median([r['p95'] for r in runs]):.1f} | {added} | "
                f"{sum(r['errors'] for r in runs)} | {cpu_ms} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="s, instant upstream")
    parser.add_argument("--slow-duration", type=float, default=15.0, help="s, 1 s upstream")
    parser.add_argument("--warmup", type=float, default=2.0, help="s before each window")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every scenario")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs")
    args = parser.parse_args()
    if not (VENV_BIN / "uvicorn").exists():
        raise SystemExit("uvicorn is not installed: .venv/bin/pip install -r requirements-dev.txt")
    started = datetime.now(UTC)
    section = render(run(args), started, args.rounds)
    print(section)
    if not args.no_docs:
        bench.write_doc(section, SECTION_TITLE, before="## Bundled fake OpenAI server")
        bench.log(f"wrote {bench.DOC_PATH.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()

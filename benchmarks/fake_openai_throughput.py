"""Measure the fake OpenAI server's throughput (requests/s) with keep-alive connections.

Starts ``python -m ai_core.fake_openai --port 0`` in a subprocess (or targets ``--url``), then
hammers ``POST /v1/chat/completions`` from ``--procs`` client processes, each running
``--connections / --procs`` asyncio raw-socket keep-alive connections for ``--duration``
seconds. The clients are deliberately minimal (pre-built request bytes, Content-Length or
chunked parsing only) so they cost less CPU than the server being measured.

Usage::

    .venv/bin/python benchmarks/fake_openai_throughput.py [--connections 32] [--duration 5]
        [--procs 2] [--stream] [--url http://127.0.0.1:8787]

Prints requests/s, latency percentiles and, for a spawned server on Linux, its CPU use
(100% = one core saturated: the server is single-threaded).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent


def build_request(host: str, port: int, stream: bool) -> bytes:
    """One keep-alive chat completion request, as raw bytes."""
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say hello to the benchmark, please."}],
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    payload = json.dumps(body).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Authorization: Bearer sk-bench\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "\r\n"
    )
    return head.encode() + payload


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response (Content-Length or chunked body); return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lowered = head.lower()
    marker = lowered.find(b"content-length:")
    if marker >= 0:
        end = lowered.index(b"\r\n", marker)
        await reader.readexactly(int(lowered[marker + 15 : end]))
        return status
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return status


async def run_connection(
    host: str, port: int, request: bytes, deadline: float, latencies: list[float]
) -> tuple[int, int]:
    reader, writer = await asyncio.open_connection(host, port)
    ok = errors = 0
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            status = await read_response(reader)
            latencies.append(time.perf_counter() - started)
            if status == 200:
                ok += 1
            else:
                errors += 1
    finally:
        writer.close()
    return ok, errors


def client_process(args: tuple[str, int, int, float, bool]) -> tuple[int, int, list[float]]:
    """One client process: ``connections`` concurrent keep-alive loops until the deadline."""
    host, port, connections, duration, stream = args
    request = build_request(host, port, stream)

    async def main() -> tuple[int, int, list[float]]:
        deadline = time.perf_counter() + duration
        latencies: list[float] = []
        results = await asyncio.gather(
            *(run_connection(host, port, request, deadline, latencies) for _ in range(connections))
        )
        return sum(r[0] for r in results), sum(r[1] for r in results), latencies

    return asyncio.run(main())


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux only)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spawn_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ai_core.fake_openai", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "Fake OpenAI server listening on http://...:port/v1"
    if "http://" not in line:
        proc.kill()
        raise RuntimeError(f"fake server did not start: {line!r}")
    base_url = line.strip().rsplit(" ", 1)[-1]
    return proc, base_url.removesuffix("/v1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="root URL of a running server (default: spawn one)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds")
    parser.add_argument("--stream", action="store_true", help="SSE streaming requests")
    args = parser.parse_args()

    proc = None
    if args.url:
        root = args.url
    else:
        proc, root = spawn_server()
    parts = urlsplit(root)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    procs = max(1, min(args.procs, args.connections))
    per_proc = [args.connections // procs + (i < args.connections % procs) for i in range(procs)]

    try:
        # Warm-up, not measured.
        client_process((host, port, 4, 0.3, args.stream))
        cpu_before = cpu_seconds(proc.pid) if proc else None
        started = time.perf_counter()
        with multiprocessing.Pool(procs) as pool:
            results = pool.map(
                client_process,
                [(host, port, n, args.duration, args.stream) for n in per_proc],
            )
        elapsed = time.perf_counter() - started
        cpu_after = cpu_seconds(proc.pid) if proc else None
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(5)

    ok = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    latencies = sorted(lat for r in results for lat in r[2])
    mode = "streaming" if args.stream else "non-streaming"
    print(f"fake OpenAI server, {mode} chat completions, keep-alive")
    print(f"  clients: {args.connections} connections in {procs} processes, {elapsed:.1f} s")
    print(f"  requests: {ok} ok, {errors} errors -> {ok / elapsed:,.0f} requests/s")
    if latencies:
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
        print(f"  latency: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    if cpu_before is not None and cpu_after is not None:
        print(f"  server CPU: {100 * (cpu_after - cpu_before) / elapsed:.0f}% of one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())

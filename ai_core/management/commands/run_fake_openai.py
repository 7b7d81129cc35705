"""``manage.py run_fake_openai``: serve the OpenAI-compatible fake server until Ctrl-C."""

from __future__ import annotations

import argparse
import errno
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ai_core.fake_openai import FakeOpenAIServer


class Command(BaseCommand):
    help = "Run an OpenAI-compatible fake server (for demos, manual tests and benchmarks)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
        parser.add_argument(
            "--port", type=_port, default=8787, help="TCP port, 0-65535 (0 = any free port)"
        )
        parser.add_argument(
            "--latency-ms", type=float, default=0.0, help="delay added to chat answers"
        )
        parser.add_argument(
            "--fail-rate", type=float, default=0.0, help="share (0..1) of chat calls answering 500"
        )
        parser.add_argument("--seed", type=int, default=None, help="seed for --fail-rate")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            server = FakeOpenAIServer(
                host=options["host"],
                port=options["port"],
                latency_ms=options["latency_ms"],
                fail_rate=options["fail_rate"],
                seed=options["seed"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc

        listening = False

        def announce(srv: FakeOpenAIServer) -> None:
            nonlocal listening
            listening = True
            self.stdout.write(f"Fake OpenAI server listening on {srv.base_url}")
            self.stdout.write("Control API under /_fake/ (reset, config, faults, requests).")
            self.stdout.flush()

        try:
            server.serve_forever(on_ready=announce)
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")
        except OSError as exc:
            if listening:  # not a start-up failure: keep the traceback
                raise
            raise CommandError(_bind_failure(exc, options["host"], options["port"])) from exc


def _port(value: str) -> int:
    """``--port``: an integer in 0-65535, else a usage error (not bind()'s traceback)."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port: use 0-65535")
    return port


def _bind_failure(exc: OSError, host: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is already in use on {host}: stop the other server or pick --port"
    reason = exc.strerror or str(exc)
    return f"cannot listen on {host}:{port}: {reason}"

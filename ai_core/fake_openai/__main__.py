"""``python -m ai_core.fake_openai``: run the fake OpenAI server in the foreground."""

from __future__ import annotations

import argparse
import logging
import sys

from ai_core.fake_openai.server import FakeOpenAIServer


def build_parser() -> argparse.ArgumentParser:
    """The CLI options, shared in spirit with the ``run_fake_openai`` management command."""
    parser = argparse.ArgumentParser(
        prog="python -m ai_core.fake_openai", description="OpenAI-compatible fake server."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
    parser.add_argument("--port", type=int, default=8787, help="TCP port (0 = any free port)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added to chat answers")
    parser.add_argument(
        "--fail-rate", type=float, default=0.0, help="share (0..1) of chat calls answering 500"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for --fail-rate")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted; print the base URL first (one line, flushed)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        server = FakeOpenAIServer(
            host=args.host,
            port=args.port,
            latency_ms=args.latency_ms,
            fail_rate=args.fail_rate,
            seed=args.seed,
        )
    except ValueError as exc:
        parser.error(str(exc))

    def announce(srv: FakeOpenAIServer) -> None:
        print(f"Fake OpenAI server listening on {srv.base_url}", flush=True)

    try:
        server.serve_forever(on_ready=announce)
    except KeyboardInterrupt:
        print("Fake OpenAI server stopped.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

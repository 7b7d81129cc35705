"""``manage.py ai_load_test``: load POST /ai/openai/chat/ of a running API over HTTP."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ._api_client import (
    ApiClient,
    ApiResponse,
    add_connection_arguments,
    client_from_options,
    login_or_fail,
)

DEFAULT_PROMPT = "Write one sentence about load testing."


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (``pct`` in 0..100); 0.0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class Command(BaseCommand):
    help = (
        "Load the chat path of a running MEGAHUB API: send --requests POST /ai/openai/chat/ "
        "calls (synchronous, --model, --max-completion-tokens) from --concurrent threads, "
        "then print throughput (requests per second of wall time), latency p50/p95/p99/max "
        "over every request, and the failed requests counted by HTTP status and error_code. "
        "Refusals (budget, quota, rate limit) are results, not crashes: the command exits "
        "non-zero only when every request failed (or login failed), so a partial overload "
        "is reported rather than treated as a broken run. Each request is a real, billed "
        "call for the brand."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_connection_arguments(parser)
        parser.add_argument(
            "--model",
            default=None,
            help=f"Model to call (default: AI_DEFAULT_MODEL, {settings.AI_DEFAULT_MODEL}).",
        )
        parser.add_argument(
            "--concurrent", type=int, default=10, help="Parallel client threads (default 10)."
        )
        parser.add_argument(
            "--requests", type=int, default=100, help="Total requests to send (default 100)."
        )
        parser.add_argument(
            "--max-completion-tokens",
            type=int,
            default=64,
            help="Output ceiling per request (default 64; converted to max_tokens for legacy "
            "models).",
        )
        parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="User message sent.")

    def handle(self, *args: Any, **options: Any) -> None:
        concurrent, total = options["concurrent"], options["requests"]
        if concurrent < 1 or total < 1 or options["max_completion_tokens"] < 1:
            raise CommandError(
                "--concurrent, --requests and --max-completion-tokens must be at least 1."
            )
        model = options["model"] or settings.AI_DEFAULT_MODEL
        client, username, password = client_from_options(options)
        login_or_fail(client, username, password)
        body = {
            "model": model,
            "messages": [{"role": "user", "content": options["prompt"]}],
            "max_completion_tokens": options["max_completion_tokens"],
            "cache": False,  # a load test of the provider path, whatever the brand's cache
        }
        self.stdout.write(
            f"Load test: {total} requests of {model} from {concurrent} threads "
            f"against {client.base_url}"
        )
        started = time.monotonic()
        responses = self._run(client, body, total=total, concurrent=concurrent)
        wall = time.monotonic() - started
        self._report(responses, wall)
        if not any(r.status == 200 for r in responses):
            raise CommandError(f"All {total} requests failed.")

    def _run(
        self, client: ApiClient, body: dict[str, Any], *, total: int, concurrent: int
    ) -> list[ApiResponse]:
        responses: list[ApiResponse] = []
        lock = threading.Lock()
        step = max(1, total // 10)
        interactive = hasattr(self.stdout, "isatty") and self.stdout.isatty()

        def post(_: int) -> ApiResponse:
            return client.request("POST", "/ai/openai/chat/", body=body)

        with ThreadPoolExecutor(max_workers=concurrent) as pool:
            for future in as_completed([pool.submit(post, i) for i in range(total)]):
                with lock:
                    responses.append(future.result())
                    done = len(responses)
                if interactive:
                    self.stdout.write(f"\r  {done}/{total} done", ending="")
                    self.stdout.flush()
                elif done % step == 0 or done == total:
                    self.stdout.write(f"  {done}/{total} done ({done * 100 // total}%)")
        if interactive:
            self.stdout.write("")
        return responses

    def _report(self, responses: list[ApiResponse], wall: float) -> None:
        ok = [r for r in responses if r.status == 200]
        latencies = sorted(r.elapsed_ms for r in responses)
        rate = len(responses) / wall if wall > 0 else 0.0
        ok_rate = len(ok) / wall if wall > 0 else 0.0
        self.stdout.write(f"requests     {len(responses)}")
        self.stdout.write(f"succeeded    {len(ok)}")
        self.stdout.write(f"failed       {len(responses) - len(ok)}")
        self.stdout.write(f"duration     {wall:.2f} s")
        self.stdout.write(f"throughput   {rate:.1f} req/s ({ok_rate:.1f} successful/s)")
        self.stdout.write(
            "latency ms   "
            + "  ".join(f"p{p} {percentile(latencies, p):.0f}" for p in (50, 95, 99))
            + f"  max {latencies[-1]:.0f}"
        )
        errors = Counter(
            (r.status, r.error_code or (r.transport_error if r.status == 0 else "-"))
            for r in responses
            if r.status != 200
        )
        if errors:
            self.stdout.write("errors:")
            self.stdout.write(f"  {'STATUS':>6}  {'ERROR_CODE':<32}  COUNT")
            for (status, code), count in sorted(errors.items(), key=lambda kv: -kv[1]):
                label = str(status) if status else "---"
                self.stdout.write(f"  {label:>6}  {code[:32]:<32}  {count}")
        else:
            self.stdout.write("errors:      none")

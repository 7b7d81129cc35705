"""``manage.py test_ai_endpoints``: exercise a running API end to end over HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ._api_client import (
    ApiClient,
    ApiResponse,
    add_connection_arguments,
    client_from_options,
    items,
)

PROMPT = [{"role": "user", "content": "Say hello to the MEGAHUB endpoint check."}]
POLL_INTERVAL_S = 0.25

Verify = Callable[[Any], str | None]


class Command(BaseCommand):
    help = (
        "Exercise a running MEGAHUB API end to end with a real HTTP client, as a user of one "
        "brand: obtain a JWT, then /ai/me/, the model list, a gpt-4o chat, an async chat "
        "polled through job_result, the jobs list, detail and dashboard, providers and their "
        "health, quotas and recommend_model. --test-o3 adds an o3 chat with reasoning_effort "
        "and checks that o3 + temperature is refused (400 INVALID_PARAMETER_FOR_MODEL). "
        "Prints one PASS/FAIL line per check and a summary; exits non-zero when any check "
        "failed. Chats are real calls billed to the brand (a few dozen tokens each). "
        "Tokens and keys are never printed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_connection_arguments(parser)
        parser.add_argument(
            "--test-o3",
            action="store_true",
            help="Also check o3: a chat with reasoning_effort, and o3 + temperature refused.",
        )
        parser.add_argument(
            "--verbose",
            action="store_true",
            help="Show HTTP status, time and a short body excerpt (secrets masked) per check.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        client, username, password = client_from_options(options)
        self.verbose = bool(options["verbose"])
        self.results: list[tuple[str, bool]] = []
        self.stdout.write(f"Checking {client.base_url} as {username}")

        login = client.login(username, password)
        if not self._check(
            "auth.token",
            login,
            status=200,
            verify=lambda body: None if client.authenticated else "no access token in the answer",
        ):
            self._summary()
            raise CommandError(
                f"Cannot authenticate as {username!r} at {client.base_url}: {login.describe()}. "
                "The other checks were not run."
            )
        self._run_checks(client, test_o3=bool(options["test_o3"]))
        failed = self._summary()
        if failed:
            raise CommandError(f"{len(failed)} check(s) failed: {', '.join(failed)}.")

    def _run_checks(self, client: ApiClient, *, test_o3: bool) -> None:
        self._check("me", client.request("GET", "/ai/me/"), status=200, verify=_me)
        wanted = ["gpt-4o", "o3"] if test_o3 else ["gpt-4o"]
        self._check(
            "models.list",
            # A paginated list: one page large enough for the whole registry.
            client.request("GET", "/ai/openai/chat/", params={"page_size": 500}),
            status=200,
            verify=lambda body: _models_available(body, wanted),
        )
        self._check(
            "chat.gpt-4o",
            _chat(client, model="gpt-4o", max_tokens=32),
            status=200,
            verify=lambda body: _completed_chat(body, "gpt-4o"),
        )
        if test_o3:
            self._check(
                "chat.o3",
                _chat(client, model="o3", reasoning_effort="low", max_completion_tokens=64),
                status=200,
                verify=_o3_chat,
            )
            self._check(
                "chat.o3.temperature_refused",
                _chat(client, model="o3", temperature=0.7, max_completion_tokens=64),
                status=400,
                verify=_temperature_refused,
            )
        accepted = _chat(client, model="gpt-4o", max_tokens=32, **{"async": True})
        job_id = None
        if self._check("chat.async", accepted, status=202, verify=_accepted):
            job_id = accepted.body["job_id"]
        if job_id is None:
            self._skip("job_result", "chat.async failed")
        else:
            self._check(
                "job_result",
                _poll_result(client, job_id),
                status=200,
                verify=lambda body: _completed_chat(body, "gpt-4o"),
            )
        self._check(
            "jobs.list",
            client.request("GET", "/ai/jobs/", params={"page_size": 50}),
            status=200,
            verify=lambda body: _lists(body, "id", job_id),
        )
        if job_id is None:
            self._skip("jobs.detail", "chat.async failed")
        else:
            self._check(
                "jobs.detail",
                client.request("GET", f"/ai/jobs/{job_id}/"),
                status=200,
                verify=_job_detail,
            )
        self._check(
            "jobs.dashboard",
            client.request("GET", "/ai/jobs/dashboard/"),
            status=200,
            verify=_is_object,
        )
        self._check(
            "providers.list",
            client.request("GET", "/ai/providers/"),
            status=200,
            verify=lambda body: _lists(body, "code", "openai"),
        )
        self._check(
            "providers.health",
            client.request("GET", "/ai/providers/health/"),
            status=200,
            verify=_is_object,
        )
        self._check("quotas", client.request("GET", "/ai/quotas/"), status=200, verify=_is_object)
        self._check(
            "recommend_model",
            client.request(
                "POST",
                "/ai/openai/recommend_model/",
                body={
                    "task_description": "Summarise a short product page in two sentences.",
                    "complexity_score": 0.3,
                },
            ),
            status=200,
            verify=_recommended,
        )

    def _check(
        self, name: str, response: ApiResponse, *, status: int, verify: Verify | None = None
    ) -> bool:
        if response.status != status:
            problem: str | None = f"expected HTTP {status}, got {response.describe()}"
        else:
            problem = verify(response.body) if verify is not None else None
        ok = problem is None
        self.results.append((name, ok))
        line = f"{'PASS' if ok else 'FAIL'}  {name:<28}"
        if self.verbose:
            status_text = str(response.status) if response.status else "---"
            line += f"  {status_text:>3}  {response.elapsed_ms:>7.0f} ms  {response.excerpt()}"
        if problem is not None:
            line += f"  {problem}"
        self.stdout.write(line.rstrip(), self.style.SUCCESS if ok else self.style.ERROR)
        return ok

    def _skip(self, name: str, reason: str) -> None:
        self.results.append((name, False))
        self.stdout.write(f"FAIL  {name:<28}  not run: {reason}", self.style.ERROR)

    def _summary(self) -> list[str]:
        failed = [name for name, ok in self.results if not ok]
        passed = len(self.results) - len(failed)
        self.stdout.write(f"{len(self.results)} checks: {passed} passed, {len(failed)} failed")
        return failed


def _chat(client: ApiClient, **body: Any) -> ApiResponse:
    # "cache": false: every check reaches the provider, even for a brand whose response
    # cache is on (a cached answer has no attempts and would fail the job checks).
    return client.request(
        "POST", "/ai/openai/chat/", body={"messages": PROMPT, "cache": False, **body}
    )


def _poll_result(client: ApiClient, job_id: str) -> ApiResponse:
    """GET job_result until it answers 200 (finished) or the client's timeout passes; the
    answer's elapsed time is the whole wait."""
    started = time.monotonic()
    deadline = started + client.timeout
    while True:
        response = client.request(
            "GET", "/ai/openai/completion/job_result/", params={"job_id": job_id}
        )
        if response.status != 202 or time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL_S)
    return ApiResponse(
        status=response.status,
        body=response.body,
        elapsed_ms=(time.monotonic() - started) * 1000,
        transport_error=response.transport_error,
    )


def _is_object(body: Any) -> str | None:
    return None if isinstance(body, dict) else "the answer is not a JSON object"


def _me(body: Any) -> str | None:
    if not isinstance(body, dict) or not body.get("brand"):
        return "no brand in the answer"
    return None


def _models_available(body: Any, wanted: list[str]) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        return "the answer is not a paginated list (count, next, previous, results)"
    available = {m.get("name") for m in items(body) if isinstance(m, dict) and m.get("available")}
    missing = [name for name in wanted if name not in available]
    return f"not available: {', '.join(missing)}" if missing else None


def _completed_chat(body: Any, model: str) -> str | None:
    if not isinstance(body, dict):
        return "the answer is not a JSON object"
    if body.get("status", "completed") != "completed":
        return f"job {body.get('job_id')} ended {body.get('status')}: {body.get('error')}"
    if body.get("model") != model:
        return f"answered by {body.get('model')!r}, expected {model!r}"
    if not body.get("content"):
        return "empty content"
    if not (body.get("usage") or {}).get("total_tokens"):
        return "no token usage"
    return None


def _o3_chat(body: Any) -> str | None:
    problem = _completed_chat(body, "o3")
    if problem is None and not (body.get("usage") or {}).get("reasoning_tokens"):
        problem = "no reasoning tokens reported"
    return problem


def _temperature_refused(body: Any) -> str | None:
    if not isinstance(body, dict) or body.get("error_code") != "INVALID_PARAMETER_FOR_MODEL":
        return f"error_code {body.get('error_code') if isinstance(body, dict) else None!r}"
    if "temperature" not in (body.get("invalid_params") or []):
        return "temperature not listed in invalid_params"
    return None


def _accepted(body: Any) -> str | None:
    if not isinstance(body, dict) or not body.get("job_id"):
        return "no job_id in the answer"
    return None


def _lists(body: Any, field: str, value: str | None) -> str | None:
    if not isinstance(body, dict | list):
        return "the answer is not a list"
    if value is not None and value not in {row.get(field) for row in items(body)}:
        return f"{value} is not listed"
    return None


def _job_detail(body: Any) -> str | None:
    if not isinstance(body, dict) or body.get("status") != "completed":
        return f"status {body.get('status') if isinstance(body, dict) else None!r}"
    if not body.get("attempts"):
        return "no attempts recorded"
    return None


def _recommended(body: Any) -> str | None:
    if isinstance(body, dict) and body.get("recommended_model"):
        return None
    reasoning = body.get("reasoning") if isinstance(body, dict) else None
    return f"no recommended_model ({reasoning})"

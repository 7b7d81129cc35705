"""GET /ai/providers/health/: figures computed in the database from the brand's own job
attempts equal an independent Python computation, and other brands never move them."""

from __future__ import annotations

import random
import statistics
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from ai_core.models import AIJob, AIJobType, JobAttempt
from ai_core.provider_errors import ProviderServerError
from ai_core.services.job_types import job_types_seed
from ai_providers.circuit import circuit_record_outcome, circuit_reset
from ai_providers.models import ProviderCredential
from tests.core.test_auth import assert_error

pytestmark = pytest.mark.django_db

URL = "/ai/providers/health/"
WINDOW = 900


@pytest.fixture
def job_type(db) -> AIJobType:
    job_types_seed(include_o3=True)
    return AIJobType.objects.get(code="chat_completion")


@pytest.fixture
def memory_circuits(settings):
    settings.REDIS_URL = ""
    settings.AI_CIRCUIT_FAILURE_THRESHOLD = 2
    circuit_reset()
    yield
    circuit_reset()


def add_attempts(brand, job_type, rows: list[tuple]) -> None:
    """``rows``: (provider, outcome, latency_ms, seconds ago). One job holds them all."""
    job = AIJob.objects.create(brand=brand, job_type=job_type, model="gpt-4o")
    now = timezone.now()
    for number, (provider, outcome, latency, ago) in enumerate(rows, start=1):
        attempt = JobAttempt.objects.create(
            job=job,
            number=number,
            provider=provider,
            model="gpt-4o",
            outcome=outcome,
            latency_ms=latency,
            error_class="ProviderServerError" if outcome == "error" else "",
        )
        JobAttempt.objects.filter(pk=attempt.pk).update(created_at=now - timedelta(seconds=ago))


def random_rows(seed: int, n: int, providers=("openai", "azure_openai")) -> list[tuple]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        provider = rng.choice(providers)
        outcome = rng.choices(["success", "error", "skipped"], weights=[7, 2, 1])[0]
        latency = 0 if outcome == "skipped" else rng.randint(20, 5000)
        ago = rng.choice([rng.randint(1, WINDOW - 60), rng.randint(WINDOW + 60, 5 * WINDOW)])
        rows.append((provider, outcome, latency, ago))
    return rows


def expected_figures(rows: list[tuple], provider: str) -> dict:
    """The window's figures, computed in Python from the fixture rows."""
    recent = [r for r in rows if r[0] == provider and r[3] < WINDOW]
    calls = [r for r in recent if r[1] in ("success", "error")]
    errors = [r for r in calls if r[1] == "error"]
    latencies = sorted(r[2] for r in calls)
    if len(latencies) >= 2:
        p95 = round(statistics.quantiles(latencies, n=100, method="inclusive")[94], 1)
    else:
        p95 = float(latencies[0]) if latencies else None
    return {
        "calls": len(calls),
        "errors": len(errors),
        "skipped": len([r for r in recent if r[1] == "skipped"]),
        "error_rate": round(len(errors) / len(calls), 4) if calls else None,
        "p95_latency_ms": p95,
    }


def figures(entry: dict) -> dict:
    return {k: entry[k] for k in ("calls", "errors", "skipped", "error_rate", "p95_latency_ms")}


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def by_provider(body: dict) -> dict[str, dict]:
    return {entry["provider"]: entry for entry in body["providers"]}


def test_health_figures_equal_an_independent_computation(api_client, brand, job_type, providers):
    rows = random_rows(seed=7, n=120)
    add_attempts(brand, job_type, rows)

    response = api_client.get(URL)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["window"]["seconds"] == WINDOW
    health = by_provider(body)
    assert set(health) == {"openai", "azure_openai", "anthropic", "google"}
    for provider in ("openai", "azure_openai"):
        expected = expected_figures(rows, provider)
        assert expected["calls"] > 10  # the fixture exercises the computation
        assert figures(health[provider]) == expected
    assert figures(health["google"]) == {
        "calls": 0,
        "errors": 0,
        "skipped": 0,
        "error_rate": None,
        "p95_latency_ms": None,
    }
    assert health["google"]["status"] == "unknown"


def test_other_brands_attempts_never_change_the_figures(
    api_client, other_client, brand, other_brand, job_type, providers
):
    rows = random_rows(seed=11, n=60)
    add_attempts(brand, job_type, rows)
    before = by_provider(api_client.get(URL).json())

    noise = [("openai", "error", 60_000, 5)] * 40 + [("azure_openai", "success", 1, 5)] * 40
    add_attempts(other_brand, job_type, noise)
    after = by_provider(api_client.get(URL).json())

    for provider in ("openai", "azure_openai"):
        assert figures(after[provider]) == figures(before[provider])
        assert figures(after[provider]) == expected_figures(rows, provider)
        assert after[provider]["status"] == before[provider]["status"]
    theirs = by_provider(other_client.get(URL).json())
    assert figures(theirs["openai"]) == expected_figures(noise, "openai")
    assert theirs["openai"]["status"] == "down"


@pytest.mark.parametrize(
    ("rows", "status"),
    [
        ([("openai", "success", 100, 10)] * 20, "healthy"),
        ([("openai", "success", 100, 10)] * 18 + [("openai", "error", 100, 10)] * 2, "degraded"),
        ([("openai", "success", 100, 10)] * 5 + [("openai", "error", 100, 10)] * 5, "down"),
        ([("openai", "error", 100, 10)] * 2, "degraded"),
        ([("openai", "success", 100, WINDOW + 100)] * 20, "unknown"),
    ],
)
def test_status_follows_the_error_rate(api_client, brand, job_type, providers, rows, status):
    add_attempts(brand, job_type, rows)

    assert by_provider(api_client.get(URL).json())["openai"]["status"] == status


def test_last_check_is_the_later_of_the_last_call_and_the_last_test(
    api_client, brand, job_type, openai_credential
):
    add_attempts(brand, job_type, [("openai", "success", 100, WINDOW * 3)])
    old = by_provider(api_client.get(URL).json())["openai"]
    assert old["last_call_at"] is not None
    assert old["last_check"] == old["last_call_at"]
    assert old["last_test_at"] is None
    assert old["status"] == "unknown"

    api_client.post(
        "/ai/credentials/test_connection/", {"credential_id": openai_credential.pk}, format="json"
    )
    tested = by_provider(api_client.get(URL).json())["openai"]

    assert tested["last_test_ok"] is True
    assert tested["last_check"] == tested["last_test_at"]
    assert parse(tested["last_check"]) > parse(old["last_call_at"])
    assert tested["status"] == "healthy"  # no calls in the window: the test decides
    assert tested["credentials"][0]["last_test_ok"] is True


def test_a_failed_connection_test_without_traffic_is_down(
    api_client, openai_credential, fake_openai
):
    fake_openai.add_faults([{"status": 401}])
    api_client.post(
        "/ai/credentials/test_connection/", {"credential_id": openai_credential.pk}, format="json"
    )

    health = by_provider(api_client.get(URL).json())["openai"]

    assert health["status"] == "down"
    assert health["last_test_ok"] is False
    assert health["credentials"][0]["last_test_error"] == "ProviderAuthError"


def test_circuit_state_is_shown_per_provider_and_per_credential(
    api_client, brand, make_openai_credential, memory_circuits
):
    first = make_openai_credential(brand, name="first")
    second = make_openai_credential(brand, name="second")
    boom = ProviderServerError("boom", status_code=503)

    for _ in range(2):
        circuit_record_outcome(first, boom)
    health = by_provider(api_client.get(URL).json())["openai"]
    assert health["circuit_state"] == "open"
    assert health["status"] == "degraded"  # the second credential still serves
    assert {c["name"]: c["circuit_state"] for c in health["credentials"]} == {
        "first": "open",
        "second": "closed",
    }

    for _ in range(2):
        circuit_record_outcome(second, boom)
    health = by_provider(api_client.get(URL).json())["openai"]
    assert health["status"] == "down"
    assert health["circuit_state"] == "open"
    assert by_provider(api_client.get(URL).json())["azure_openai"]["circuit_state"] == "closed"


def test_an_inactive_credentials_open_circuit_does_not_make_the_provider_down(
    api_client, brand, make_openai_credential, memory_circuits
):
    spare = make_openai_credential(brand, name="spare", is_active=False)
    make_openai_credential(brand, name="main")
    for _ in range(2):
        circuit_record_outcome(spare, ProviderServerError("boom", status_code=503))

    health = by_provider(api_client.get(URL).json())["openai"]

    assert health["circuit_state"] == "closed"
    assert health["status"] == "unknown"


def test_another_brands_circuit_is_not_shown(
    api_client, other_brand, make_openai_credential, openai_credential, memory_circuits
):
    theirs = make_openai_credential(other_brand, name="theirs")
    for _ in range(2):
        circuit_record_outcome(theirs, ProviderServerError("boom", status_code=503))

    health = by_provider(api_client.get(URL).json())["openai"]

    assert health["circuit_state"] == "closed"
    assert [c["id"] for c in health["credentials"]] == [openai_credential.pk]
    assert ProviderCredential.objects.count() == 2


def test_members_read_health(member_client, providers):
    assert member_client.get(URL).status_code == 200


def test_health_needs_authentication(client, providers):
    assert_error(client.get(URL), 401, "NOT_AUTHENTICATED")

"""test_ai_endpoints and ai_load_test drive the API under gunicorn (threaded, as in
production) over real HTTP; the API calls the fake OpenAI server. Needs PostgreSQL (the
server is another process and must see the test database) and Redis."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from ai_core.models import AIJob
from ai_providers.budget_models import BrandQuota
from tests.conftest import API_KEY
from tests.factories import PASSWORD
from tests.workers import api_server, require_postgres_and_redis

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

O3_CHECKS = ("chat.o3", "chat.o3.temperature_refused")


@pytest.fixture(scope="module")
def server(django_db_setup):
    """One gunicorn for the module (each test brings its own rows); it must start after the
    test database exists."""
    require_postgres_and_redis()
    with api_server(workers=1, threads=16) as live:
        yield live


@pytest.fixture
def live(server, chat_ready, admin_user):
    """The server URL and the arguments that log in as the brand's admin."""
    return server.url, [
        "--base-url",
        server.url,
        "--username",
        admin_user.username,
        "--password",
        PASSWORD,
        "--brand",
        "acme",
    ]


def run(command: str, *args: str) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


def verdicts(output: str) -> dict[str, str]:
    return {
        line.split()[1]: line.split()[0]
        for line in output.splitlines()
        if line.startswith(("PASS ", "FAIL "))
    }


def test_every_endpoint_check_passes(live, brand, fake_openai):
    url, login = live

    output = run("test_ai_endpoints", *login, "--test-o3", "--verbose")

    checks = verdicts(output)
    assert set(checks.values()) == {"PASS"}, output
    assert set(O3_CHECKS) <= set(checks)
    assert {"auth.token", "me", "chat.gpt-4o", "chat.async", "job_result", "jobs.list"} <= set(
        checks
    )
    assert {"jobs.dashboard", "providers.health", "quotas", "recommend_model"} <= set(checks)
    assert f"{len(checks)} checks: {len(checks)} passed, 0 failed" in output
    # Verbose lines carry status and timing, never a token or a key.
    assert " 200 " in output
    assert " ms " in output
    assert "eyJ" not in output  # a JWT starts with the base64 of '{"'
    assert API_KEY not in output
    # The chats were real: the fake server answered gpt-4o (sync and async) and o3.
    models = [r["json"]["model"] for r in fake_openai.requests() if r["json"]]
    assert models.count("gpt-4o") == 2
    assert models.count("o3") == 1  # the o3 + temperature request never left the API
    assert AIJob.objects.filter(brand=brand).count() == 3


def test_the_checks_reach_the_provider_even_with_the_brands_cache_on(live, brand, fake_openai):
    from ai_providers.budget_models import BrandQuota

    BrandQuota.objects.create(brand=brand, response_cache=True)
    _, login = live
    output = run("test_ai_endpoints", *login)
    assert set(verdicts(output).values()) == {"PASS"}, output
    models = [r["json"]["model"] for r in fake_openai.requests() if r["json"]]
    assert models.count("gpt-4o") == 2  # the async check was not answered from the cache


def test_without_test_o3_the_o3_checks_are_not_run(live, fake_openai):
    url, login = live

    output = run("test_ai_endpoints", *login)

    assert not set(O3_CHECKS) & set(verdicts(output))
    assert "o3" not in [r["json"]["model"] for r in fake_openai.requests() if r["json"]]


def test_a_failing_check_fails_the_command(live, fake_openai):
    url, login = live
    fake_openai.add_faults([{"status": 400}], match={"model": "gpt-4o"})

    out = StringIO()
    with pytest.raises(CommandError, match=r"1 check\(s\) failed: chat.gpt-4o"):
        call_command("test_ai_endpoints", *login, stdout=out)

    line = next(line for line in out.getvalue().splitlines() if "chat.gpt-4o" in line)
    assert line.startswith("FAIL")
    assert "expected HTTP 200, got HTTP 400 PROVIDER_BAD_REQUEST" in line


def test_wrong_password_fails_with_a_clear_message(live, admin_user):
    url, _ = live

    out = StringIO()
    with pytest.raises(CommandError) as error:
        call_command(
            "test_ai_endpoints",
            "--base-url",
            url,
            "--username",
            admin_user.username,
            "--password",
            "not-the-password",
            stdout=out,
        )

    message = str(error.value)
    assert f"Cannot authenticate as '{admin_user.username}'" in message
    assert "HTTP 401" in message
    assert "not-the-password" not in message + out.getvalue()
    assert out.getvalue().splitlines()[1].startswith("FAIL  auth.token")


def test_load_test_reports_throughput_and_percentiles(live, fake_openai):
    url, login = live
    fake_openai.configure(latency_ms=20)

    output = run(
        "ai_load_test", *login, "--model=o3", "--concurrent=10", "--requests=30",
        "--max-completion-tokens=32",
    )  # fmt: skip

    lines = dict(line.split(None, 1) for line in output.splitlines() if line[:1].isalpha())
    assert lines["requests"] == "30"
    assert lines["succeeded"] == "30"
    assert lines["failed"] == "0"
    assert float(lines["throughput"].split()[0]) > 0
    p50, p95, p99 = (int(lines["latency"].split()[i]) for i in (2, 4, 6))
    assert 20 <= p50 <= p95 <= p99
    assert "errors:      none" in output
    assert "30/30 done (100%)" in output
    chats = [r for r in fake_openai.requests() if r["path"].endswith("/chat/completions")]
    assert len(chats) == 30
    assert {r["json"]["model"] for r in chats} == {"o3"}


def test_load_test_counts_refusals_by_status_and_error_code(live, brand):
    url, login = live
    BrandQuota.objects.create(brand=brand, daily_reasoning_jobs_limit=12)

    output = run("ai_load_test", *login, "--model=o3-mini", "--concurrent=8", "--requests=20")

    assert "succeeded    12" in output
    assert "failed       8" in output
    error_rows = [line.split() for line in output.splitlines()[-2:]]
    assert ["403", "REASONING_QUOTA_EXCEEDED", "8"] in error_rows


def test_load_test_fails_when_every_request_fails(live):
    url, login = live

    out = StringIO()
    with pytest.raises(CommandError, match="All 5 requests failed"):
        call_command(
            "ai_load_test", *login, "--model=gpt-9", "--concurrent=5", "--requests=5", stdout=out
        )

    assert "400  UNKNOWN_MODEL" in out.getvalue()

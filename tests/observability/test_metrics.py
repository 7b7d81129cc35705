"""SPEC §9: /metrics exposes requests, provider calls, retries, fallbacks, tokens, cost,
budget rejections and queue depth with the right labels; provider calls = attempts."""

import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.test import Client

from ai_core.models import AIJob, AIJobType, JobAttempt
from ai_openai.models import OpenAIJob
from ai_providers.budget_models import BrandQuota
from megahub import metrics

from ..workers import database_url, require_postgres
from .conftest import delta, parse_metrics

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]

MESSAGES = [{"role": "user", "content": "Summarise our launch plan."}]


def scrape():
    response = Client().get("/metrics")
    assert response.status_code == 200
    return parse_metrics(response.content.decode())


def chat(client, **body):
    return client.post(
        "/ai/openai/chat/", {"model": "gpt-4o", "messages": MESSAGES, **body}, format="json"
    )


def test_metrics_needs_no_authentication_and_speaks_the_prometheus_format(db):
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    text = response.content.decode()
    for name in (
        "megahub_http_requests_total",
        "megahub_provider_calls_total",
        "megahub_provider_call_duration_seconds",
        "megahub_provider_retries_total",
        "megahub_provider_fallbacks_total",
        "megahub_tokens_total",
        "megahub_cost_usd_total",
        "megahub_budget_rejections_total",
        "megahub_jobs_queue_depth",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name


def test_provider_calls_match_the_attempts_recorded(api_client, chat_ready, fake_openai):
    before = scrape()
    assert chat(api_client).status_code == 200
    fake_openai.add_faults([{"status": 500}])  # one retry, then success
    assert chat(api_client).status_code == 200
    fake_openai.add_faults([{"status": 500}] * 4, match={"model": "gpt-4o"})
    fallback = chat(api_client, fallback_models=["gpt-4.1"])  # gpt-4o exhausted → gpt-4.1
    assert fallback.status_code == 200, fallback.content
    fake_openai.add_faults([{"status": 400}])  # not retried, no fallback
    assert chat(api_client).status_code == 400  # PROVIDER_BAD_REQUEST
    after = scrape()

    calls = delta(before, after, "megahub_provider_calls_total")
    assert calls == JobAttempt.objects.count() == 9
    assert delta(before, after, "megahub_provider_calls_total", outcome="success") == 3
    assert delta(before, after, "megahub_provider_calls_total", outcome="error") == 6
    assert (
        delta(before, after, "megahub_provider_calls_total", provider="openai", model="gpt-4.1")
        == 1
    )
    assert delta(before, after, "megahub_provider_call_duration_seconds_count") == 9
    assert delta(before, after, "megahub_provider_retries_total", model="gpt-4o") == 4
    assert JobAttempt.objects.count() - AIJob.objects.count() == 4 + 1  # retries + fallback
    assert (
        delta(
            before,
            after,
            "megahub_provider_fallbacks_total",
            from_model="gpt-4o",
            to_model="gpt-4.1",
        )
        == 1
    )


def test_requests_are_labelled_by_route_pattern_never_by_raw_path(
    api_client, chat_ready, fake_openai
):
    before = scrape()
    job_id = chat(api_client).json()["job_id"]
    assert api_client.get(f"/ai/jobs/{job_id}/").status_code == 200
    assert api_client.get("/ai/no-such-thing/").status_code == 404
    after = scrape()
    labels = {"method": "POST", "route": "/ai/openai/chat/", "status": "200"}
    assert delta(before, after, "megahub_http_requests_total", **labels) == 1
    assert (
        delta(before, after, "megahub_http_requests_total", method="GET", route="/ai/jobs/{id}/")
        == 1
    )
    assert delta(before, after, "megahub_http_requests_total", route="<unmatched>") == 1
    assert (
        delta(
            before,
            after,
            "megahub_http_request_duration_seconds_count",
            method="POST",
            route="/ai/openai/chat/",
        )
        == 1
    )
    assert not any(job_id in value for _, labels in after for _, value in labels)


def test_queue_depth_counts_waiting_jobs_per_priority_queue(brand, ai_ready):
    job_type = AIJobType.objects.get(code="chat_completion")
    for status, priority in [
        ("queued", "high"),
        ("queued", "high"),
        ("retrying", "urgent"),
        ("running", "low"),
        ("completed", "low"),
    ]:
        AIJob.objects.create(brand=brand, job_type=job_type, status=status, priority=priority)
    samples = scrape()
    depth = {
        dict(labels)["queue"]: value
        for (name, labels), value in samples.items()
        if name == "megahub_jobs_queue_depth"
    }
    assert depth == {"urgent": 1, "high": 2, "normal": 0, "low": 0}


def test_usage_and_budget_recorders_export_tokens_cost_and_rejections(db):
    before = scrape()
    usage = {"prompt_tokens": 120, "completion_tokens": 80, "cached_tokens": 20}
    metrics.record_usage_metrics("o3", {**usage, "reasoning_tokens": 50}, Decimal("0.004321"))
    metrics.record_usage_metrics("o3", {"prompt_tokens": 5}, Decimal("0"))
    metrics.record_budget_rejection("o3_cost")
    after = scrape()
    for kind, count in (("prompt", 125), ("completion", 80), ("cached", 20), ("reasoning", 50)):
        assert delta(before, after, "megahub_tokens_total", model="o3", kind=kind) == count
    cost = delta(before, after, "megahub_cost_usd_total", model="o3")
    assert cost == pytest.approx(0.004321)
    assert delta(before, after, "megahub_budget_rejections_total", metric="o3_cost") == 1


def test_a_failing_recorder_never_fails_its_caller(db):
    metrics.record_usage_metrics("gpt-4o", {"prompt_tokens": "not a number"}, Decimal("1"))
    metrics.record_provider_attempt("openai", "gpt-4o", "success", latency_ms=-5)


def test_finished_chats_are_exported_as_tokens_and_cost(
    api_client, chat_ready, fake_openai, django_capture_on_commit_callbacks
):
    """Usage metrics are recorded once the job's completion commits."""
    before = scrape()
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            assert chat(api_client).status_code == 200
    after = scrape()
    jobs = OpenAIJob.objects.filter(model="gpt-4o")
    prompt = sum(job.prompt_tokens for job in jobs)
    completion = sum(job.completion_tokens for job in jobs)
    assert prompt > 0
    assert delta(before, after, "megahub_tokens_total", model="gpt-4o", kind="prompt") == prompt
    assert (
        delta(before, after, "megahub_tokens_total", model="gpt-4o", kind="completion")
        == completion
    )
    cost = sum((job.cost_usd for job in jobs), Decimal(0))
    assert delta(before, after, "megahub_cost_usd_total", model="gpt-4o") == pytest.approx(
        float(cost)
    )


def test_budget_refusals_are_counted_by_metric(api_client, chat_ready, fake_openai, brand):
    """Needs the budget refusal path to call ``record_budget_rejection``."""
    BrandQuota.objects.create(brand=brand, o3_daily_budget=Decimal("0.000001"))
    before = scrape()
    response = api_client.post(
        "/ai/openai/chat/",
        {"model": "o3", "messages": MESSAGES, "max_completion_tokens": 100},
        format="json",
    )
    assert response.status_code == 403
    after = scrape()
    assert delta(before, after, "megahub_budget_rejections_total", metric="o3_cost") == 1


def run_python(code: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "megahub.test_settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_multiprocess_mode_aggregates_the_samples_of_every_process(tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR (gunicorn workers, Celery workers), /metrics adds up
    what every process recorded."""
    # DB_POOL off: the queue depth's query (tested above) fails at once on the database
    # DATABASE_URL names, which the test run does not create; through the pool it waited
    # DB_POOL_TIMEOUT (30 s) for a connection before leaving the series out.
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "DB_POOL": "false"}
    record = (
        "import django; django.setup()\n"
        "from megahub import metrics\n"
        "metrics.record_provider_attempt('openai', 'o3', 'success', 1500)\n"
        "metrics.record_provider_retry('openai', 'o3')\n"
    )
    for _ in range(2):
        run_python(record, env)
    text = run_python(
        "import django; django.setup()\n"
        "from prometheus_client import generate_latest\n"
        "from megahub import metrics\n"
        "print(generate_latest(metrics.exposition_registry()).decode())\n",
        env,
    )
    samples = parse_metrics(text)
    labels = (("model", "o3"), ("outcome", "success"), ("provider", "openai"))
    assert samples[("megahub_provider_calls_total", labels)] == 2
    assert samples[("megahub_provider_retries_total", labels[:1] + labels[2:])] == 2
    assert samples[("megahub_provider_call_duration_seconds_sum", labels[:1] + labels[2:])] == 3.0


def test_a_scrape_while_the_database_is_unreachable_answers_within_seconds(db):
    """The queue depth waits at most ``QUEUE_DEPTH_WAIT`` for a pooled connection: the
    scrape still answers, with every other series, well inside Prometheus' 10 s scrape
    timeout (the pool's own wait, DB_POOL_TIMEOUT, is 30 s)."""
    require_postgres()
    scrape = (
        "import django; django.setup()\n"
        "from prometheus_client import generate_latest\n"
        "from megahub import metrics\n"
        "metrics.record_provider_retry('openai', 'o3')\n"
        "print(generate_latest(metrics.exposition_registry()).decode())\n"
    )
    retries = ("megahub_provider_retries_total", (("model", "o3"), ("provider", "openai")))
    # Reachable (this run's test database): the pooled connection's query gives the series.
    samples = parse_metrics(run_python(scrape, {"DATABASE_URL": database_url(), "DB_POOL": "true"}))
    assert samples[("megahub_jobs_queue_depth", (("queue", "normal"),))] == 0
    assert samples[retries] == 1

    unreachable = database_url().rsplit("/", 1)[0] + "/megahub_no_such_database"
    started = time.monotonic()
    samples = parse_metrics(run_python(scrape, {"DATABASE_URL": unreachable, "DB_POOL": "true"}))
    elapsed = time.monotonic() - started
    assert samples[retries] == 1
    assert not any(name == "megahub_jobs_queue_depth" for name, _ in samples)
    assert elapsed < 8, elapsed

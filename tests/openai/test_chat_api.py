"""POST /ai/openai/chat/ end to end: the SDK talks HTTP to the fake server, and we check
what the fake server actually received for every model and every parameter rule."""

import logging
from decimal import ROUND_HALF_UP, Decimal

import pytest

from ai_core.models import AIJob, JobAttempt
from ai_openai.models import AIModel, OpenAIJob
from tests.core.test_auth import assert_error

pytestmark = pytest.mark.django_db

MODELS = [
    "o3",
    "o3-mini",
    "o4-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4-turbo",
]
REASONING = {"o3", "o3-mini", "o4-mini"}
LEGACY = {"gpt-4o", "gpt-4o-mini", "gpt-4-turbo"}
MESSAGES = [
    {"role": "system", "content": "You are an SEO expert."},
    {"role": "user", "content": "Analyse this page."},
]


def sent(fake):
    """The last chat request the fake server received (its JSON body)."""
    chats = [r for r in fake.requests() if r["path"].endswith("/chat/completions")]
    return chats[-1]["json"] if chats else None


def chat(client, **body):
    return client.post("/ai/openai/chat/", {"messages": MESSAGES, **body}, format="json")


@pytest.mark.parametrize("model", MODELS)
def test_plain_request_is_configured_for_the_model(api_client, chat_ready, fake_openai, model):
    response = chat(api_client, model=model, max_tokens=50)
    assert response.status_code == 200, response.content
    body = sent(fake_openai)
    roles = [m["role"] for m in body["messages"]]
    if model in REASONING:
        assert roles == ["developer", "user"]
        assert body["reasoning_effort"] == "medium"
        assert response.json()["applied_config"]["reasoning_effort"] == "medium (default)"
    elif model in LEGACY:
        assert roles == ["system", "user"]
        assert "reasoning_effort" not in body
    else:
        assert "reasoning_effort" not in body
    if model in LEGACY:
        assert body["max_tokens"] == 50
        assert "max_completion_tokens" not in body
        assert all(isinstance(m["content"], str) for m in body["messages"])
    else:
        assert body["max_completion_tokens"] == 50
        assert "max_tokens" not in body
        assert body["messages"][1]["content"] == [{"type": "text", "text": "Analyse this page."}]
    assert body["model"] == model


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    "param",
    [
        ("temperature", 0.7),
        ("top_p", 0.9),
        ("presence_penalty", 0.5),
        ("frequency_penalty", 0.5),
        ("logprobs", True),
    ],
)
def test_sampling_params_never_reach_reasoning_models(
    api_client, chat_ready, fake_openai, model, param
):
    name, value = param
    response = chat(api_client, model=model, **{name: value})
    if model in REASONING:
        body = assert_error(response, 400, "INVALID_PARAMETER_FOR_MODEL")
        assert body["invalid_params"] == [name]
        assert body["model"] == model
        assert sent(fake_openai) is None
        assert AIJob.objects.count() == 0
    else:
        assert response.status_code == 200, response.content
        assert sent(fake_openai)[name] == value


@pytest.mark.parametrize("model", MODELS)
def test_reasoning_effort_reaches_only_reasoning_models(api_client, chat_ready, fake_openai, model):
    response = chat(api_client, model=model, reasoning_effort="high")
    if model in REASONING:
        assert response.status_code == 200
        assert sent(fake_openai)["reasoning_effort"] == "high"
        assert "reasoning_effort" not in response.json()["applied_config"]
    else:
        body = assert_error(response, 400, "INVALID_PARAMETER_FOR_MODEL")
        assert body["invalid_params"] == ["reasoning_effort"]
        assert sent(fake_openai) is None
        if model in LEGACY:
            assert body["suggested_params"] == ["temperature", "max_tokens"]


@pytest.mark.parametrize("model", MODELS)
def test_developer_role_and_parts_are_converted_for_the_family(
    api_client, chat_ready, fake_openai, model
):
    messages = [
        {"role": "developer", "content": [{"type": "text", "text": "Tu es un expert SEO"}]},
        {"role": "user", "content": [{"type": "text", "text": "Analyse approfondie"}]},
    ]
    response = api_client.post(
        "/ai/openai/chat/", {"model": model, "messages": messages}, format="json"
    )
    assert response.status_code == 200, response.content
    body = sent(fake_openai)
    if model in LEGACY:
        assert body["messages"] == [
            {"role": "system", "content": "Tu es un expert SEO"},
            {"role": "user", "content": "Analyse approfondie"},
        ]
    else:
        assert body["messages"][0]["role"] == "developer"
        assert body["messages"][1]["content"] == [{"type": "text", "text": "Analyse approfondie"}]


def test_o3_temperature_error_is_the_seeds(api_client, chat_ready, fake_openai):
    body = assert_error(
        chat(api_client, model="o3", temperature=0.5), 400, "INVALID_PARAMETER_FOR_MODEL"
    )
    assert body["detail"] == "O3 models don't support temperature parameter"
    assert body["suggested_params"] == ["reasoning_effort", "max_completion_tokens"]
    assert "reasoning_effort" in body["model_requirements"]["required"]
    assert "temperature" in body["model_requirements"]["forbidden"]
    assert "max_completion_tokens" in body["model_requirements"]["optional"]


def test_unknown_and_disabled_models(api_client, chat_ready, fake_openai, settings):
    body = assert_error(chat(api_client, model="gpt-5-ultra"), 400, "UNKNOWN_MODEL")
    assert body["suggestions"]
    settings.AI_ENABLE_O3 = False
    assert_error(chat(api_client, model="o3"), 403, "MODEL_DISABLED")
    assert sent(fake_openai) is None


def test_no_credential_is_424(api_client, ai_ready, fake_openai):
    assert_error(chat(api_client, model="gpt-4o"), 424, "PROVIDER_NOT_CONFIGURED")
    assert AIJob.objects.count() == 0


def test_fallback_chain_translates_each_step(api_client, chat_ready, fake_openai):
    for model in ("o3", "o3-mini", "gpt-4.1"):
        fake_openai.add_faults([{"status": 503}] * 4, match={"model": model})
    response = api_client.post(
        "/ai/openai/chat/",
        {
            "model": "o3",
            "reasoning_effort": "high",
            "max_completion_tokens": 200,
            "fallback_models": True,
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "Tu es un expert SEO"}]},
                {"role": "user", "content": "Analyse"},
            ],
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    result = response.json()
    assert result["model"] == "gpt-4o"
    assert result["fallback_used"] is True
    assert result["attempts"] == 13
    assert result["metadata"]["total_retries"] == 9
    chats = [r["json"] for r in fake_openai.requests() if r["path"].endswith("/chat/completions")]
    by_model = {}
    for body in chats:
        by_model.setdefault(body["model"], body)
    assert list(by_model) == ["o3", "o3-mini", "gpt-4.1", "gpt-4o"]
    assert by_model["o3"]["reasoning_effort"] == "high"
    assert by_model["o3-mini"]["reasoning_effort"] == "high"
    assert by_model["o3"]["messages"][0]["role"] == "developer"
    assert "reasoning_effort" not in by_model["gpt-4.1"]
    assert by_model["gpt-4.1"]["max_completion_tokens"] == 200
    gpt4o = by_model["gpt-4o"]
    assert "reasoning_effort" not in gpt4o
    assert gpt4o["messages"][0] == {"role": "system", "content": "Tu es un expert SEO"}
    assert gpt4o["max_tokens"] == 200
    job = AIJob.objects.get(public_id=result["job_id"])
    assert job.attempts.count() == 13
    assert job.total_retries == 9


def test_cost_equals_the_hand_computed_value(api_client, chat_ready, fake_openai):
    fake_openai.configure(completion_tokens=1234, cached_tokens=1024)
    response = chat(api_client, model="o3", messages=[{"role": "user", "content": "word " * 1500}])
    result = response.json()
    usage = result["usage"]
    assert usage["cached_tokens"] == 1024
    assert usage["completion_tokens"] == 1234
    assert 0 < usage["reasoning_tokens"] <= usage["completion_tokens"]
    prompt, cached, completion = usage["prompt_tokens"], 1024, 1234
    # SPEC §4 o3 prices: 2.00 input, 0.50 cached input, 8.00 output per 1M tokens; reasoning
    # tokens are inside completion_tokens and billed once, at the output price.
    expected = (
        (
            Decimal(prompt - cached) * Decimal("2.00")
            + Decimal(cached) * Decimal("0.50")
            + Decimal(completion) * Decimal("8.00")
        )
        / Decimal(1_000_000)
    ).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
    assert result["cost_usd"] == f"{expected:.6f}"
    assert OpenAIJob.objects.get(job__public_id=result["job_id"]).cost_usd == expected


def test_sync_chat_records_one_job_with_attempts(api_client, chat_ready, fake_openai):
    fake_openai.add_faults([{"status": 500}])
    result = chat(api_client, model="gpt-4o").json()
    job = AIJob.objects.get(public_id=result["job_id"])
    assert AIJob.objects.count() == 1
    assert job.status == "completed"
    assert list(job.attempts.values_list("outcome", flat=True)) == ["error", "success"]
    assert JobAttempt.objects.get(job=job, outcome="error").status_code == 500
    assert result["attempts"] == 2
    assert result["metadata"]["total_retries"] == 1
    assert result["content"]
    assert result["provider"] == "openai"
    assert set(result["usage"]) >= {
        "prompt_tokens",
        "completion_tokens",
        "reasoning_tokens",
        "cached_tokens",
        "total_tokens",
    }
    assert result["performance_profile"] == AIModel.objects.get(name="gpt-4o").performance_profile
    openai_job = job.openai_job
    assert openai_job.model == "gpt-4o"
    assert openai_job.generation == "legacy"


@pytest.mark.django_db(transaction=True)
def test_async_chat_gives_the_same_result_through_job_result(api_client, chat_ready, fake_openai):
    sync = chat(api_client, model="gpt-4o").json()
    response = chat(api_client, model="gpt-4o", **{"async": True})
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status_url"] == f"/ai/jobs/{accepted['job_id']}/"
    result = api_client.get(accepted["result_url"])
    assert result.status_code == 200
    body = result.json()
    assert body["status"] == "completed"
    assert body["content"] == sync["content"]
    assert body["usage"] == sync["usage"]
    assert body["cost_usd"] == sync["cost_usd"]


@pytest.mark.django_db
def test_job_result_is_202_while_not_finished_and_404_for_other_brands(
    api_client, other_client, chat_ready, fake_openai
):
    accepted = chat(api_client, model="gpt-4o", **{"async": True}).json()  # never committed
    pending = api_client.get(accepted["result_url"])
    assert pending.status_code == 202
    assert pending.json()["status"] == "queued"
    assert_error(other_client.get(accepted["result_url"]), 404, "JOB_NOT_FOUND")
    assert_error(api_client.get("/ai/openai/completion/job_result/"), 400, "VALIDATION_ERROR")


def test_provider_failure_after_retries_is_502_and_timeout_504(
    api_client, chat_ready, fake_openai, settings
):
    fake_openai.add_faults([{"status": 500}] * 4)
    body = assert_error(chat(api_client, model="gpt-4o"), 502, "PROVIDER_ERROR")
    assert body["job_id"].startswith("ai_job_")
    fake_openai.add_faults([{"status": 429, "retry_after": 0.01}] * 4)
    response = chat(api_client, model="gpt-4o")
    assert_error(response, 429, "RATE_LIMITED")
    assert "Retry-After" in response


def test_rate_limited_chat_answers_the_providers_retry_after_rounded_up(
    api_client, chat_ready, fake_openai, settings
):
    settings.AI_RETRY_DELAYS = [0.01]  # one retry, after the provider's 1.2 s
    fake_openai.add_faults([{"status": 429, "retry_after": 1.2}] * 2)
    response = chat(api_client, model="gpt-4o")
    body = assert_error(response, 429, "RATE_LIMITED")
    assert response["Retry-After"] == "2"
    assert body["retry_after"] == 2
    assert body["provider_status"] == 429
    job = AIJob.objects.get(public_id=body["job_id"])
    assert job.status == "failed"
    assert list(job.attempts.values_list("status_code", "retry_after")) == [(429, 1.2)] * 2


def test_rate_limited_chat_answers_a_retry_after_too_long_to_wait_for_in_line(
    api_client, chat_ready, fake_openai, settings
):
    settings.AI_RETRY_MAX_WAIT = 1  # the provider's 2 s is not waited for: 429 at once
    fake_openai.add_faults([{"status": 429, "retry_after": 2}] * 4)
    response = chat(api_client, model="gpt-4o")
    body = assert_error(response, 429, "RATE_LIMITED")
    assert response["Retry-After"] == "2"
    assert body["retry_after"] == 2
    job = AIJob.objects.get(public_id=body["job_id"])
    assert list(job.attempts.values_list("retry_after", flat=True)) == [2.0]


def test_rate_limited_chat_without_a_provider_retry_after_answers_the_requeue_delay(
    api_client, chat_ready, fake_openai, settings
):
    settings.AI_RATE_LIMIT_REQUEUE_DELAY = 7.5
    fake_openai.add_faults([{"status": 429}] * 4)
    response = chat(api_client, model="gpt-4o")
    body = assert_error(response, 429, "RATE_LIMITED")
    assert response["Retry-After"] == "8"
    assert body["retry_after"] == 8


@pytest.mark.django_db(transaction=True)
def test_rate_limited_async_chat_is_requeued_with_the_providers_delay_not_answered_429(
    api_client, chat_ready, fake_openai, settings, caplog
):
    caplog.set_level(logging.INFO, logger="megahub.jobs")
    settings.AI_RETRY_MAX_WAIT = 1
    fake_openai.add_faults([{"status": 429, "retry_after": 2}])
    response = chat(api_client, model="gpt-4o", **{"async": True})
    assert response.status_code == 202, response.content
    assert "Retry-After" not in response
    job = AIJob.objects.get(public_id=response.json()["job_id"])
    assert job.status == "completed"  # the inline runner ran the re-queued job at once
    assert job.requeues == 1
    requeued = [r for r in caplog.records if r.getMessage() == "job.requeued"]
    assert [r.delay_s for r in requeued] == [2.0]


def test_openai_jobs_list_filters_and_brand_scope(
    api_client, other_client, chat_ready, fake_openai
):
    chat(api_client, model="gpt-4o")
    chat(api_client, model="o3", reasoning_effort="high")
    assert api_client.get("/ai/openai/jobs/?model=o3").json()["count"] == 1
    assert api_client.get("/ai/openai/jobs/?generation=legacy").json()["count"] == 1
    assert api_client.get("/ai/openai/jobs/?reasoning_effort=high").json()["count"] == 1
    assert api_client.get("/ai/openai/jobs/?cost_usd__gte=1000").json()["count"] == 0
    assert api_client.get("/ai/openai/jobs/").json()["count"] == 2
    assert other_client.get("/ai/openai/jobs/").json()["count"] == 0


def test_models_listing(api_client, ai_ready):
    listed = api_client.get("/ai/openai/chat/?page_size=500").json()["results"]
    rows = {row["name"]: row for row in listed}
    assert rows["o3"]["prices_per_million"] == {
        "input": "2.000000",
        "cached_input": "0.500000",
        "output": "8.000000",
    }
    assert rows["gpt-4-turbo"]["prices_per_million"]["cached_input"] is None
    assert "temperature" in rows["o3"]["rules"]["forbidden"]


def test_jobs_filter_across_the_openai_relation(api_client, other_client, chat_ready, fake_openai):
    chat(api_client, model="gpt-4o")
    o3 = chat(api_client, model="o3", reasoning_effort="high").json()["job_id"]

    def ids(client, query):
        return [row["id"] for row in client.get(f"/ai/jobs/?{query}").json()["results"]]

    assert ids(api_client, "openai_job__model=o3") == [o3]
    assert ids(api_client, "openai_job__generation=new&openai_job__reasoning_effort=high") == [o3]
    assert ids(api_client, "status=completed&openai_job__model=o3&openai_job__generation=new") == [
        o3
    ]
    assert ids(other_client, "openai_job__model=o3") == []


def test_fallback_skips_a_model_whose_context_window_cannot_hold_the_prompt(
    api_client, chat_ready, fake_openai
):
    fake_openai.add_faults([{"status": 503}] * 4, match={"model": "o3"})
    long_prompt = "token " * 140_000  # > gpt-4o's 128k window, < gpt-4.1's 1M
    response = api_client.post(
        "/ai/openai/chat/",
        {
            "model": "o3",
            "max_completion_tokens": 100,
            "fallback_models": ["gpt-4o", "gpt-4.1"],
            "messages": [{"role": "user", "content": long_prompt}],
        },
        format="json",
    )
    assert response.status_code == 200, response.content[:500]
    assert response.json()["model"] == "gpt-4.1"
    models_sent = [
        r["json"]["model"]
        for r in fake_openai.requests()
        if r["path"].endswith("/chat/completions")
    ]
    assert "gpt-4o" not in models_sent
    assert models_sent[-1] == "gpt-4.1"


def test_stream_on_the_chat_api_is_refused_not_answered_in_one_piece(
    api_client, chat_ready, fake_openai
):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    response = api_client.post("/ai/openai/chat/", body, format="json")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "POST /ai/v1/chat/completions" in error["suggestions"]
    assert AIJob.objects.count() == 0
    assert fake_openai.requests() == []
    # stream: false is the default and fine.
    plain = api_client.post("/ai/openai/chat/", {**body, "stream": False}, format="json")
    assert plain.status_code == 200, plain.content


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("job_type", {"a": 1}, "VALIDATION_ERROR"),
        ("job_type", ["x"], "VALIDATION_ERROR"),
        ("job_type", 0, "VALIDATION_ERROR"),
        ("job_type", False, "VALIDATION_ERROR"),
        ("job_type", "", "JOB_TYPE_NOT_FOUND"),
        ("priority", 0, "VALIDATION_ERROR"),
        ("priority", "", "VALIDATION_ERROR"),
        ("priority", [], "VALIDATION_ERROR"),
        ("priority", {}, "VALIDATION_ERROR"),
        ("priority", False, "VALIDATION_ERROR"),
    ],
)
@pytest.mark.parametrize("run", ["sync", "async"])
def test_a_bad_job_type_or_priority_is_refused_as_on_jobs(
    api_client, chat_ready, fake_openai, field, value, code, run
):
    """Not taken for the default because it is empty or false (SPEC §5: anything else →
    400), and never a 500 for an object or a list."""
    body = {"messages": [{"role": "user", "content": "hi"}], field: value}
    if run == "async":
        body["async"] = True
    error = assert_error(api_client.post("/ai/openai/chat/", body, format="json"), 400, code)
    assert field in error["field_errors"]
    if field == "priority":
        assert error["field_errors"]["priority"] == ["Doit être: low, normal, high, urgent"]
    assert AIJob.objects.count() == 0
    assert fake_openai.requests() == []


def test_null_job_type_and_priority_are_the_defaults(api_client, chat_ready, fake_openai):
    body = {"messages": [{"role": "user", "content": "hi"}], "job_type": None, "priority": None}
    assert api_client.post("/ai/openai/chat/", body, format="json").status_code == 200
    job = AIJob.objects.get()
    assert (job.job_type.code, job.priority) == ("chat_completion", "normal")

"""SPEC §11: the official openai SDK (sync and async) pointed at the gateway."""

import asyncio

import openai
import pytest
from rest_framework.test import APIClient

from ai_core.models import AIJob
from ai_openai.models import BrandApiKey, OpenAIJob
from tests.core.test_auth import assert_error

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Bonjour"}]


@pytest.fixture
def gateway_key(api_client, chat_ready):
    response = api_client.post("/ai/api-keys/", {"name": "ci"}, format="json")
    assert response.status_code == 201
    return response.json()


def gateway_post(key: dict, body: dict):
    """``POST /ai/v1/chat/completions`` with ``key`` (a created key's JSON), in-process."""
    return APIClient().post(
        "/ai/v1/chat/completions", body, format="json", HTTP_AUTHORIZATION=f"Bearer {key['key']}"
    )


@pytest.fixture
def sdk(live_server, gateway_key):
    return openai.OpenAI(
        base_url=f"{live_server.url}/ai/v1", api_key=gateway_key["key"], max_retries=0, timeout=30
    )


def test_key_is_shown_once_and_stored_hashed(api_client, gateway_key):
    assert gateway_key["key"].startswith("mh-")
    assert gateway_key["prefix"] == gateway_key["key"][:12]
    listed = api_client.get("/ai/api-keys/").json()["results"]
    assert listed[0]["prefix"] == gateway_key["prefix"]
    assert gateway_key["key"] not in str(listed)
    row = BrandApiKey.objects.get()
    assert gateway_key["key"] not in str(row.__dict__)


def test_members_cannot_manage_keys(member_client, chat_ready):
    assert_error(
        member_client.post("/ai/api-keys/", {"name": "x"}, format="json"), 403, "PERMISSION_DENIED"
    )
    assert_error(member_client.get("/ai/api-keys/"), 403, "PERMISSION_DENIED")


def test_sdk_chat_completion_through_the_gateway(sdk, fake_openai, brand):
    completion = sdk.chat.completions.create(model="o3", messages=HELLO, max_completion_tokens=50)
    assert completion.choices[0].message.content
    assert completion.usage.completion_tokens_details.reasoning_tokens > 0
    job = AIJob.objects.get(brand=brand)
    assert job.status == "completed"
    assert OpenAIJob.objects.get(job=job).model == "o3"
    sent = [r["json"] for r in fake_openai.requests() if r["path"].endswith("/chat/completions")]
    assert sent[-1]["reasoning_effort"] == "medium"  # auto-configured, as on the REST API


def test_sdk_error_temperature_on_o3_raises_bad_request(sdk, fake_openai):
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="o3", messages=HELLO, temperature=0.5)
    assert "O3 models don't support temperature parameter" in str(info.value)
    assert info.value.body["code"] == "invalid_parameter_for_model"
    assert info.value.body["param"] == "temperature"
    assert fake_openai.requests() == []
    # SPEC §3's fields are at the top level too (the SDK reads only "error").
    whole = info.value.response.json()
    assert whole["error_code"] == "INVALID_PARAMETER_FOR_MODEL"
    assert whole["detail"] == "O3 models don't support temperature parameter"
    assert whole["invalid_params"] == ["temperature"]


def test_sdk_models_list(sdk, brand):
    names = [m.id for m in sdk.models.list()]
    assert {"o3", "gpt-4o", "gpt-4.1"} <= set(names)
    # Only what the brand's credentials serve: without any, nothing (each call would 424).
    from ai_providers.models import ProviderCredential

    ProviderCredential.objects.filter(brand=brand).update(is_active=False)
    assert [m.id for m in sdk.models.list()] == []
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("gpt-4o")


def test_async_sdk_client(live_server, gateway_key, fake_openai):
    async def run():
        client = openai.AsyncOpenAI(
            base_url=f"{live_server.url}/ai/v1", api_key=gateway_key["key"], max_retries=0
        )
        completion = await client.chat.completions.create(model="gpt-4o", messages=HELLO)
        models = await client.models.list()
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        try:
            await client.chat.completions.create(model="o3", messages=HELLO, temperature=0.2)
        except openai.BadRequestError as exc:
            error = exc
        return completion, [m.id async for m in models], chunks, error

    completion, names, chunks, error = asyncio.run(run())
    assert completion.choices[0].message.content
    assert "gpt-4o" in names
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == completion.choices[0].message.content
    assert chunks[-1].usage.total_tokens > 0
    assert "O3 models don't support temperature parameter" in str(error)


def test_bad_and_revoked_keys_are_401(live_server, api_client, gateway_key):
    bad = openai.OpenAI(base_url=f"{live_server.url}/ai/v1", api_key="mh-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    api_client.delete(f"/ai/api-keys/{gateway_key['id']}/")
    revoked = openai.OpenAI(
        base_url=f"{live_server.url}/ai/v1", api_key=gateway_key["key"], max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        revoked.models.list()


def test_key_restricted_to_models(live_server, api_client, chat_ready, fake_openai):
    key = api_client.post(
        "/ai/api-keys/", {"name": "mini", "allowed_models": ["gpt-4o-mini"]}, format="json"
    ).json()
    client = openai.OpenAI(base_url=f"{live_server.url}/ai/v1", api_key=key["key"], max_retries=0)
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini"]
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="o3", messages=HELLO)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=HELLO).choices


def test_a_keys_model_restriction_holds_for_fallbacks(
    live_server, api_client, chat_ready, fake_openai, settings
):
    """A key may not reach another model through ``fallback_models``: a listed one it may
    not call is refused before any call; ``true`` falls back only along allowed models."""
    settings.AI_MODEL_FALLBACK_CHAIN = ["gpt-4o", "gpt-4.1", "gpt-4o-mini"]
    key = api_client.post(
        "/ai/api-keys/",
        {"name": "two", "allowed_models": ["gpt-4o", "gpt-4o-mini"]},
        format="json",
    ).json()
    client = openai.OpenAI(base_url=f"{live_server.url}/ai/v1", api_key=key["key"], max_retries=0)
    with pytest.raises(openai.PermissionDeniedError, match="gpt-4-turbo"):
        client.chat.completions.create(
            model="gpt-4o", messages=HELLO, extra_body={"fallback_models": ["gpt-4-turbo"]}
        )
    assert not fake_openai.requests()
    fake_openai.add_faults([{"status": 500}] * 8, match={"model": "gpt-4o"})
    completion = client.chat.completions.create(
        model="gpt-4o", messages=HELLO, extra_body={"fallback_models": True}
    )
    assert completion.model == "gpt-4o-mini"  # gpt-4.1, not allowed, was skipped
    called = {r["json"]["model"] for r in fake_openai.requests() if r.get("json")}
    assert called == {"gpt-4o", "gpt-4o-mini"}


def test_other_brands_key_cannot_be_revoked(api_client, other_client, gateway_key, other_admin):
    assert_error(other_client.delete(f"/ai/api-keys/{gateway_key['id']}/"), 404, "NOT_FOUND")
    assert BrandApiKey.objects.get().revoked_at is None


@pytest.mark.parametrize("stream", ["false", "yes", 1, [], {}])
def test_stream_must_be_a_boolean(gateway_key, fake_openai, stream):
    response = gateway_post(gateway_key, {"model": "gpt-4o", "messages": HELLO, "stream": stream})
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert body["error"]["param"] == "stream"
    assert AIJob.objects.count() == 0
    assert fake_openai.requests() == []


def test_sdk_rate_limited_chat_gets_the_providers_retry_after(sdk, fake_openai, brand, settings):
    settings.AI_RETRY_MAX_WAIT = 1  # the provider's 3 s is not waited for: 429 at once
    fake_openai.add_faults([{"status": 429, "retry_after": 3}] * 4)
    with pytest.raises(openai.RateLimitError) as info:
        sdk.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert info.value.response.headers["Retry-After"] == "3"
    assert info.value.body["type"] == "rate_limit_error"
    assert info.value.body["code"] == "rate_limited"
    whole = info.value.response.json()
    assert whole["error_code"] == "RATE_LIMITED"
    assert whole["retry_after"] == 3
    job = AIJob.objects.get(brand=brand)
    assert whole["job_id"] == job.public_id
    assert job.status == "failed"
    assert list(job.attempts.values_list("retry_after", flat=True)) == [3.0]


def test_rate_limited_chat_without_a_provider_retry_after_gets_the_requeue_delay(
    gateway_key, fake_openai, settings
):
    settings.AI_RATE_LIMIT_REQUEUE_DELAY = 7.5
    fake_openai.add_faults([{"status": 429}] * 4)
    response = gateway_post(gateway_key, {"model": "gpt-4o", "messages": HELLO})
    body = assert_error(response, 429, "RATE_LIMITED")
    assert response["Retry-After"] == "8"
    assert body["error"]["type"] == "rate_limit_error"
    assert body["retry_after"] == 8


def test_unknown_model_message_says_it_once_and_echoes_a_long_name_cut(sdk, fake_openai):
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="nope", messages=HELLO)
    assert info.value.body["message"] == "Unknown model 'nope'."
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="x" * 100_000, messages=HELLO)
    body = info.value.response.json()
    assert body["detail"] == f"Unknown model '{'x' * 64}…'."
    assert len(info.value.response.content) < 5_000
    assert fake_openai.requests() == []


def test_async_is_refused_by_the_gateway_not_ignored(gateway_key, fake_openai):
    response = gateway_post(gateway_key, {"model": "gpt-4o", "messages": HELLO, "async": True})
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert body["error"]["param"] == "async"
    assert AIJob.objects.count() == 0
    assert fake_openai.requests() == []


def test_a_request_the_provider_refuses_is_a_400_the_sdk_does_not_retry(
    live_server, gateway_key, fake_openai, brand, api_client
):
    """A provider's 400 is the request's fault: BadRequestError with the provider's message
    and param, one call, not a 502 that the SDK (max_retries=2) would send three times."""
    fault = {"status": 400, "message": "Invalid schema for tool 'f'.", "param": "tools"}
    fake_openai.add_faults([fault] * 5)
    client = openai.OpenAI(base_url=f"{live_server.url}/ai/v1", api_key=gateway_key["key"])
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    error = info.value.body
    assert error["param"] == "tools"
    assert error["code"] == "provider_bad_request"
    assert "Invalid schema for tool 'f'." in error["message"]
    assert len([r for r in fake_openai.requests() if r.get("json")]) == 1
    assert AIJob.objects.get(brand=brand).status == "failed"
    rest = api_client.post(
        "/ai/openai/chat/", {"model": "gpt-4o", "messages": HELLO}, format="json"
    )
    assert_error(rest, 400, "PROVIDER_BAD_REQUEST")
    assert rest.json()["param"] == "tools"


def test_the_bearer_scheme_is_case_insensitive(gateway_key, fake_openai):
    for scheme in ("bearer", "BEARER"):
        response = APIClient().get(
            "/ai/v1/models", HTTP_AUTHORIZATION=f"{scheme} {gateway_key['key']}"
        )
        assert response.status_code == 200, response.content
    wrong = APIClient().get("/ai/v1/models", HTTP_AUTHORIZATION=f"Basic {gateway_key['key']}")
    assert wrong.status_code == 401


def test_sdk_models_retrieve(live_server, api_client, chat_ready):
    key = api_client.post(
        "/ai/api-keys/", {"name": "mini", "allowed_models": ["gpt-4o-mini"]}, format="json"
    ).json()
    client = openai.OpenAI(base_url=f"{live_server.url}/ai/v1", api_key=key["key"], max_retries=0)
    model = client.models.retrieve("gpt-4o-mini")
    assert (model.id, model.object, model.owned_by) == ("gpt-4o-mini", "model", "megahub")
    for hidden in ("o3", "no-such-model"):  # not allowed for this key / unknown
        with pytest.raises(openai.NotFoundError) as info:
            client.models.retrieve(hidden)
        assert info.value.body["code"] == "model_not_found"


def test_a_completion_keeps_what_the_provider_answered_beyond_the_text(sdk, fake_openai):
    """logprobs, refusal, system_fingerprint reach the SDK as the provider sent them (they
    used to be dropped: ``choice.logprobs.content`` failed on None)."""
    completion = sdk.chat.completions.create(
        model="gpt-4o", messages=HELLO, logprobs=True, top_logprobs=1
    )
    choice = completion.choices[0]
    words = choice.message.content.split()
    assert [entry.token for entry in choice.logprobs.content] == words
    assert choice.logprobs.content[0].top_logprobs[0].token == words[0]
    assert choice.message.refusal is None
    assert completion.system_fingerprint == "fp_fake"
    assert completion.service_tier == "default"
    plain = sdk.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert plain.choices[0].logprobs is None
    raw = sdk.chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO)
    body = raw.http_response.json()
    assert body["choices"][0]["logprobs"] is None
    assert body["choices"][0]["message"]["refusal"] is None


def test_a_reply_appended_as_the_sdk_dumps_it_is_accepted(sdk, fake_openai):
    """``messages.append(reply.model_dump())``: the SDK's assistant message carries
    refusal, audio, function_call, annotations (null or empty): accepted, not refused as
    unknown fields, and only what the provider takes is sent on."""
    first = sdk.chat.completions.create(model="gpt-4o", messages=HELLO)
    dumped = first.choices[0].message.model_dump()
    assert {"refusal", "audio", "function_call", "annotations"} <= set(dumped)
    history = [*HELLO, dumped, {"role": "user", "content": "Et encore ?"}]
    assert sdk.chat.completions.create(model="gpt-4o", messages=history).choices
    sent = [r["json"] for r in fake_openai.requests() if r.get("json")][-1]["messages"][1]
    assert set(sent) == {"role", "content"}
    refused = [*HELLO, {"role": "assistant", "content": None, "refusal": "I can't."}]
    assert sdk.chat.completions.create(model="gpt-4o", messages=refused).choices
    sent = [r["json"] for r in fake_openai.requests() if r.get("json")][-1]["messages"][1]
    assert sent["refusal"] == "I can't."
    with pytest.raises(openai.BadRequestError, match="refusal"):
        sdk.chat.completions.create(
            model="gpt-4o", messages=[*HELLO, {"role": "user", "content": "x", "refusal": "no"}]
        )


def test_stream_options_without_stream_is_refused_as_openai_does(gateway_key, fake_openai):
    response = gateway_post(
        gateway_key,
        {"model": "gpt-4o", "messages": HELLO, "stream_options": {"include_usage": True}},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "stream_options"
    assert not fake_openai.requests()


def test_the_sdk_reads_the_request_id_as_the_trace_id(sdk, fake_openai):
    raw = sdk.chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO)
    assert raw.headers["x-request-id"] == raw.headers["x-trace-id"]
    assert raw.parse()._request_id == raw.headers["x-trace-id"]


def test_a_wrong_method_on_the_gateway_is_an_invalid_request_error(gateway_key):
    response = APIClient().get(
        "/ai/v1/chat/completions", HTTP_AUTHORIZATION=f"Bearer {gateway_key['key']}"
    )
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("field", "value"),
    [("job_type", ["x"]), ("job_type", {"a": 1}), ("priority", 0), ("priority", "")],
)
@pytest.mark.parametrize("stream", [False, True])
def test_gateway_refuses_a_bad_job_type_or_priority(gateway_key, fake_openai, field, value, stream):
    body = {"model": "gpt-4o", "messages": HELLO, field: value, "stream": stream}
    response = gateway_post(gateway_key, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", field)
    assert AIJob.objects.count() == 0
    assert fake_openai.requests() == []


@pytest.mark.parametrize("user", [[], {}, 1.5, True])
def test_gateway_user_must_be_a_string(gateway_key, fake_openai, user):
    response = gateway_post(gateway_key, {"model": "gpt-4o", "messages": HELLO, "user": user})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "user"
    assert AIJob.objects.count() == 0


def test_gateway_user_as_a_string_is_accepted(gateway_key, fake_openai):
    response = gateway_post(
        gateway_key, {"model": "gpt-4o", "messages": HELLO, "user": "end-user-42"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize("stream", [False, True])
def test_every_circuit_open_is_a_502_streamed_or_not(
    gateway_key, chat_ready, fake_openai, settings, stream
):
    """SPEC §3: PROVIDER_ERROR is a 502 (a stream answered 503)."""
    from ai_core.provider_errors import ProviderServerError
    from ai_providers.circuit import circuit_record_outcome

    settings.REDIS_URL = ""  # the in-process circuit store
    settings.AI_CIRCUIT_FAILURE_THRESHOLD = 1
    circuit_record_outcome(chat_ready, ProviderServerError("boom", status_code=500), "gpt-4o")
    response = gateway_post(gateway_key, {"model": "gpt-4o", "messages": HELLO, "stream": stream})
    assert response.status_code == 502
    assert response.json()["error_code"] == "PROVIDER_ERROR"
    assert fake_openai.requests() == []

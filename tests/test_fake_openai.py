"""Tests for the OpenAI-compatible fake server, driven through the real ``openai`` SDK over HTTP.

No Django database is needed; the fixtures come from ``ai_core.fake_openai.pytest_plugin``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import openai
import pytest

from ai_core.fake_openai import FakeOpenAIServer

HELLO = [{"role": "user", "content": "Hello there, how are you doing today?"}]


def client(server: FakeOpenAIServer, **kwargs: Any) -> openai.OpenAI:
    """A real SDK client against the fake server, without retries."""
    options: dict[str, Any] = {"api_key": "sk-test", "max_retries": 0, "timeout": 5, **kwargs}
    return openai.OpenAI(base_url=server.base_url, **options)


def control(server: FakeOpenAIServer, method: str, path: str, body: Any = None) -> Any:
    """Call the HTTP control API with plain urllib, return the decoded JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        server.root_url + path,
        data=data,
        method=method,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def assert_usage_consistent(usage: Any) -> None:
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert 0 <= usage.completion_tokens_details.reasoning_tokens <= usage.completion_tokens
    assert 0 <= usage.prompt_tokens_details.cached_tokens <= usage.prompt_tokens


# --- normal answers ---------------------------------------------------------------------


def test_reasoning_model_reports_reasoning_tokens(fake_openai: FakeOpenAIServer) -> None:
    completion = client(fake_openai).chat.completions.create(model="o3", messages=HELLO)

    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == "o3"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert "o3" in choice.message.content
    assert "Hello there" in choice.message.content
    usage = completion.usage
    assert usage.prompt_tokens > 0
    assert 0 < usage.completion_tokens_details.reasoning_tokens < usage.completion_tokens
    assert_usage_consistent(usage)


def test_non_reasoning_model_has_no_reasoning_tokens(fake_openai: FakeOpenAIServer) -> None:
    completion = client(fake_openai).chat.completions.create(model="gpt-4o", messages=HELLO)

    assert completion.model == "gpt-4o"
    usage = completion.usage
    assert usage.completion_tokens_details.reasoning_tokens == 0
    assert usage.completion_tokens > 0
    assert_usage_consistent(usage)


def test_prompt_tokens_use_pluggable_counter_and_content_parts() -> None:
    with FakeOpenAIServer(token_counter=lambda text: len(text)) as server:
        parts = [{"type": "text", "text": "abc"}, {"type": "text", "text": "defg"}]
        completion = client(server).chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "system", "content": "12345"}, {"role": "user", "content": parts}],
        )
    # Contents 5 + 3 + 4 and roles "system" 6 + "user" 4 characters (roles count, as in
    # OpenAI's chat formula), plus 3 per message, plus 3 for the reply priming.
    assert completion.usage.prompt_tokens == 5 + 3 + 4 + 6 + 4 + 2 * 3 + 3


def test_streaming_matches_non_streaming(fake_openai: FakeOpenAIServer) -> None:
    sdk = client(fake_openai)
    plain = sdk.chat.completions.create(model="gpt-4o", messages=HELLO)
    chunks = list(
        sdk.chat.completions.create(
            model="gpt-4o",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    final = chunks[-1]
    assert final.choices == []
    assert final.usage is not None
    assert final.usage.completion_tokens == plain.usage.completion_tokens
    assert final.usage.prompt_tokens == plain.usage.prompt_tokens


def test_streaming_without_include_usage_has_no_usage_chunk(
    fake_openai: FakeOpenAIServer,
) -> None:
    chunks = list(
        client(fake_openai).chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    )
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_models_list_and_retrieve(fake_openai: FakeOpenAIServer) -> None:
    sdk = client(fake_openai)
    ids = [m.id for m in sdk.models.list()]
    assert {"o3", "o3-mini", "o4-mini", "gpt-4.1", "gpt-4o", "gpt-4o-mini"} <= set(ids)
    assert sdk.models.retrieve("o4-mini").id == "o4-mini"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("no-such-model")


def test_azure_client_uses_deployment_path(fake_openai: FakeOpenAIServer) -> None:
    azure = openai.AzureOpenAI(
        azure_endpoint=fake_openai.root_url,
        api_version="2024-10-21",
        azure_deployment="prod-o3",
        api_key="azure-key",
        max_retries=0,
    )
    completion = azure.chat.completions.create(model="o3", messages=HELLO)
    models = [m.id for m in azure.models.list()]

    assert completion.choices[0].message.content
    assert completion.usage.completion_tokens_details.reasoning_tokens > 0
    assert "gpt-4o" in models
    chat_req, models_req = fake_openai.requests()
    assert chat_req["path"] == "/openai/deployments/prod-o3/chat/completions"
    assert chat_req["query"] == {"api-version": "2024-10-21"}
    assert chat_req["headers"]["api-key"] == "azure-key"
    assert models_req["path"] == "/openai/models"


def test_azure_deployment_name_is_the_model_when_body_has_none(
    fake_openai: FakeOpenAIServer,
) -> None:
    req = urllib.request.Request(
        fake_openai.root_url + "/openai/deployments/my-dep/chat/completions?api-version=x",
        data=json.dumps({"messages": HELLO}).encode(),
        headers={"api-key": "k", "content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert json.loads(resp.read())["model"] == "my-dep"


# --- auth and protocol errors -----------------------------------------------------------


def test_missing_and_invalid_keys_get_401(fake_openai: FakeOpenAIServer) -> None:
    req = urllib.request.Request(fake_openai.base_url + "/models")
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(req, timeout=5)
    assert missing.value.code == 401
    assert set(json.loads(missing.value.read())["error"]) == {"message", "type", "param", "code"}

    fake_openai.configure(valid_keys=["sk-good"])
    with pytest.raises(openai.AuthenticationError) as invalid:
        client(fake_openai).models.list()
    assert invalid.value.code == "invalid_api_key"
    assert client(fake_openai, api_key="sk-good").models.list().data


def test_unknown_path_is_404_and_bad_json_is_400(fake_openai: FakeOpenAIServer) -> None:
    with pytest.raises(openai.NotFoundError):
        client(fake_openai).post("/no/such/thing", cast_to=object, body={})
    req = urllib.request.Request(
        fake_openai.base_url + "/chat/completions",
        data=b"{not json",
        headers={"authorization": "Bearer x", "content-type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(req, timeout=5)
    assert bad.value.code == 400
    assert json.loads(bad.value.read())["error"]["type"] == "invalid_request_error"


# --- faults -----------------------------------------------------------------------------


def test_429_carries_retry_after(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.add_faults([{"status": 429, "retry_after": 1.5}])
    with pytest.raises(openai.RateLimitError) as exc_info:
        client(fake_openai).chat.completions.create(model="gpt-4o", messages=HELLO)
    headers = exc_info.value.response.headers
    assert headers["retry-after"] == "1.5"
    assert headers["retry-after-ms"] == "1500"
    assert exc_info.value.code == "rate_limit_exceeded"
    # The fault is consumed: the next call succeeds.
    client(fake_openai).chat.completions.create(model="gpt-4o", messages=HELLO)


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (500, openai.InternalServerError),
        (502, openai.InternalServerError),
        (503, openai.InternalServerError),
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (422, openai.UnprocessableEntityError),
    ],
)
def test_status_faults_map_to_sdk_errors(
    fake_openai: FakeOpenAIServer, status: int, error_class: type[openai.APIStatusError]
) -> None:
    fake_openai.add_faults([{"status": status}])
    with pytest.raises(error_class) as exc_info:
        client(fake_openai).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert exc_info.value.status_code == status
    assert isinstance(exc_info.value.body, dict)
    assert "message" in exc_info.value.body


def test_hang_times_out_quickly(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.add_faults([{"type": "hang", "seconds": 3}])
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client(fake_openai, timeout=0.5).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert time.monotonic() - started < 2


def test_reset_is_a_connection_error(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.add_faults([{"type": "reset"}])
    with pytest.raises(openai.APIConnectionError) as exc_info:
        client(fake_openai).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert not isinstance(exc_info.value, openai.APITimeoutError)


def test_truncate_is_a_connection_error(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.add_faults([{"type": "truncate"}])
    with pytest.raises(openai.APIConnectionError):
        client(fake_openai).chat.completions.create(model="gpt-4o", messages=HELLO)


def test_malformed_body_fails_to_parse(fake_openai: FakeOpenAIServer) -> None:
    # The SDK does not wrap a broken 200 JSON body: json.JSONDecodeError escapes as is.
    fake_openai.add_faults([{"type": "malformed"}])
    with pytest.raises(json.JSONDecodeError):
        client(fake_openai).chat.completions.create(model="gpt-4o", messages=HELLO)


def test_no_usage(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.add_faults([{"type": "no_usage"}])
    completion = client(fake_openai).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert completion.usage is None
    assert completion.choices[0].message.content


def test_latency_fault_and_header(fake_openai: FakeOpenAIServer) -> None:
    sdk = client(fake_openai)
    fake_openai.add_faults([{"type": "latency", "ms": 300}])
    started = time.monotonic()
    sdk.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert time.monotonic() - started >= 0.3

    started = time.monotonic()
    sdk.chat.completions.create(
        model="gpt-4o", messages=HELLO, extra_headers={"X-Fake-Latency-Ms": "200"}
    )
    assert time.monotonic() - started >= 0.2


def test_fault_match_scopes_by_model_and_keeps_fifo_order(fake_openai: FakeOpenAIServer) -> None:
    sdk = client(fake_openai)
    fake_openai.add_faults([{"status": 503}, {"status": 429}], match={"model": "o3"})

    assert sdk.chat.completions.create(model="gpt-4o", messages=HELLO).choices
    with pytest.raises(openai.InternalServerError):
        sdk.chat.completions.create(model="o3", messages=HELLO)
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model="o3", messages=HELLO)
    assert sdk.chat.completions.create(model="o3", messages=HELLO).choices
    assert fake_openai.pending_faults() == []


def test_fault_match_by_path(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.add_faults([{"status": 500}], match={"path_contains": "deployments"})
    assert client(fake_openai).chat.completions.create(model="gpt-4o", messages=HELLO).choices
    azure = openai.AzureOpenAI(
        azure_endpoint=fake_openai.root_url,
        api_version="2024-10-21",
        azure_deployment="dep",
        api_key="k",
        max_retries=0,
    )
    with pytest.raises(openai.InternalServerError):
        azure.chat.completions.create(model="gpt-4o", messages=HELLO)


def test_fail_rate_is_seeded() -> None:
    def outcomes() -> list[bool]:
        with FakeOpenAIServer(fail_rate=0.5, seed=7) as server:
            sdk = client(server)
            results = []
            for _ in range(20):
                try:
                    sdk.chat.completions.create(model="gpt-4o", messages=HELLO)
                    results.append(True)
                except openai.InternalServerError:
                    results.append(False)
            return results

    first = outcomes()
    assert first == outcomes()
    assert 0 < sum(first) < 20


def test_invalid_fault_is_rejected(fake_openai: FakeOpenAIServer) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        fake_openai.add_faults([{"type": "explode"}])
    with pytest.raises(urllib.error.HTTPError) as exc_info:
        control(fake_openai, "POST", "/_fake/faults", {"faults": [{"status": 200}]})
    assert exc_info.value.code == 400


# --- request log and HTTP control API ---------------------------------------------------


def test_request_log_records_what_the_sdk_sent(fake_openai: FakeOpenAIServer) -> None:
    client(fake_openai).chat.completions.create(
        model="o4-mini",
        messages=[{"role": "system", "content": "Be brief."}, *HELLO],
        max_completion_tokens=321,
        reasoning_effort="high",
    )
    (logged,) = fake_openai.requests()
    assert logged["method"] == "POST"
    assert logged["path"] == "/v1/chat/completions"
    assert logged["headers"]["authorization"] == "Bearer sk-test"
    assert logged["json"]["max_completion_tokens"] == 321
    assert logged["json"]["reasoning_effort"] == "high"
    assert logged["json"]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert isinstance(logged["ts"], float)


def test_http_control_api(fake_openai: FakeOpenAIServer) -> None:
    assert control(fake_openai, "GET", "/_fake/health") == {"ok": True}
    config = control(fake_openai, "POST", "/_fake/config", {"completion_tokens": 7})
    assert config["completion_tokens"] == 7
    queued = control(
        fake_openai,
        "POST",
        "/_fake/faults",
        {"faults": [{"status": 429, "retry_after": 2}], "match": {"model": "gpt-4o"}},
    )
    assert queued["pending"] == 1
    assert control(fake_openai, "GET", "/_fake/faults")[0]["match"] == {"model": "gpt-4o"}

    sdk = client(fake_openai)
    assert sdk.chat.completions.create(model="o3", messages=HELLO).usage.completion_tokens == 7
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model="gpt-4o", messages=HELLO)

    logged = control(fake_openai, "GET", "/_fake/requests")
    assert [r["json"]["model"] for r in logged] == ["o3", "gpt-4o"]
    assert logged == json.loads(json.dumps(fake_openai.requests()))

    assert control(fake_openai, "POST", "/_fake/reset") == {"ok": True}
    assert control(fake_openai, "GET", "/_fake/requests") == []
    assert control(fake_openai, "GET", "/_fake/config")["completion_tokens"] is None


def test_control_api_rejects_unknown_config(fake_openai: FakeOpenAIServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as exc_info:
        control(fake_openai, "POST", "/_fake/config", {"no_such_option": 1})
    assert exc_info.value.code == 400
    with pytest.raises(ValueError, match="fail_rate"):
        fake_openai.configure(fail_rate=2)


# --- usage emulation --------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt-4o", "o3"])
def test_completion_mode_max_hits_the_limit_exactly(
    fake_openai: FakeOpenAIServer, model: str
) -> None:
    fake_openai.configure(completion_mode="max")
    sdk = client(fake_openai)
    completion = sdk.chat.completions.create(model=model, messages=HELLO, max_completion_tokens=250)
    assert completion.usage.completion_tokens == 250
    assert completion.choices[0].finish_reason == "length"
    assert_usage_consistent(completion.usage)

    legacy = sdk.chat.completions.create(model=model, messages=HELLO, max_tokens=40)
    assert legacy.usage.completion_tokens == 40

    streamed = list(
        sdk.chat.completions.create(
            model=model,
            messages=HELLO,
            max_completion_tokens=250,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert streamed[-1].usage.completion_tokens == 250
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == completion.choices[0].message.content


def test_default_reply_is_cut_by_a_small_limit(fake_openai: FakeOpenAIServer) -> None:
    completion = client(fake_openai).chat.completions.create(
        model="gpt-4o", messages=HELLO, max_completion_tokens=3
    )
    assert completion.usage.completion_tokens == 3
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "This is a"


def test_cached_tokens_on_repeated_long_prompt(fake_openai: FakeOpenAIServer) -> None:
    sdk = client(fake_openai)
    long_prompt = [{"role": "user", "content": "word " * 1500}]
    first = sdk.chat.completions.create(model="gpt-4o", messages=long_prompt)
    second = sdk.chat.completions.create(model="gpt-4o", messages=long_prompt)
    other_model = sdk.chat.completions.create(model="gpt-4o-mini", messages=long_prompt)
    short = [sdk.chat.completions.create(model="gpt-4o", messages=HELLO) for _ in range(2)]

    prompt_tokens = second.usage.prompt_tokens
    assert prompt_tokens >= 1024
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert second.usage.prompt_tokens_details.cached_tokens == prompt_tokens // 128 * 128
    assert other_model.usage.prompt_tokens_details.cached_tokens == 0
    assert short[1].usage.prompt_tokens_details.cached_tokens == 0

    fake_openai.configure(cached_tokens=5)
    forced = sdk.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert forced.usage.prompt_tokens_details.cached_tokens == 5


def test_latency_does_not_serialise_concurrent_requests(fake_openai: FakeOpenAIServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    fake_openai.configure(latency_ms=300)
    sdk = client(fake_openai)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(
                lambda _: sdk.chat.completions.create(model="gpt-4o", messages=HELLO),
                range(8),
            )
        )
    elapsed = time.monotonic() - started
    assert len(results) == 8
    assert 0.3 <= elapsed < 1.5


def test_context_manager_and_restart() -> None:
    server = FakeOpenAIServer()
    with server:
        assert server.port != 0
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert client(server).models.list().data
    with pytest.raises(openai.APIConnectionError):
        client(server).models.list()

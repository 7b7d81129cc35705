"""Provider clients: the real ``openai`` SDK over HTTP to the fake server (no mocks)."""

from __future__ import annotations

import json
import logging
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest
from django.test import override_settings

from ai_core.provider_errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderConnectionError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
)
from ai_providers.clients import (
    CLIENT_SHARDS,
    ChatResult,
    chat_completion,
    chat_completion_stream,
    client_for_credential,
    list_models,
    parse_retry_after,
    scrub,
    sse_data,
    sse_line_ends,
)
from ai_providers.models import ProviderCredential
from ai_providers.services import credential_update

from .conftest import API_KEY, AZURE_API_VERSION

HELLO = {"messages": [{"role": "user", "content": "Say hello to the tests."}]}


def fresh(credential: ProviderCredential) -> ProviderCredential:
    """The credential as the next request would load it."""
    return ProviderCredential.objects.select_related("provider").get(pk=credential.pk)


# -- happy paths -----------------------------------------------------------------------------


def test_chat_completion_through_openai_returns_content_and_usage(openai_credential, fake_openai):
    result = chat_completion(openai_credential, model="gpt-4o", kwargs=HELLO)

    assert isinstance(result, ChatResult)
    assert result.content
    assert result.finish_reason == "stop"
    assert result.model == "gpt-4o"
    assert result.response_id.startswith("chatcmpl")
    assert result.request_id.startswith("req_")
    assert set(result.usage) == {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cached_tokens",
        "reasoning_tokens",
    }
    assert result.usage["total_tokens"] == (
        result.usage["prompt_tokens"] + result.usage["completion_tokens"]
    )
    request = fake_openai.requests()[-1]
    assert request["path"] == "/v1/chat/completions"
    assert request["json"]["model"] == "gpt-4o"
    assert request["headers"]["authorization"] == f"Bearer {API_KEY}"


def test_reasoning_model_reports_reasoning_tokens(openai_credential):
    result = chat_completion(
        openai_credential, model="o3", kwargs={**HELLO, "reasoning_effort": "low"}
    )

    assert result.usage["reasoning_tokens"] > 0


def test_the_upstream_receives_exactly_the_validated_parameters(openai_credential, fake_openai):
    kwargs = {**HELLO, "temperature": 0.2, "max_tokens": 5, "stop": ["\n"]}

    chat_completion(openai_credential, model="gpt-4o", kwargs=kwargs)

    assert fake_openai.requests()[-1]["json"] == {**kwargs, "model": "gpt-4o"}


def test_chat_completion_through_azure_uses_the_deployment_path(azure_credential, fake_openai):
    result = chat_completion(azure_credential, model="gpt-4o", kwargs=HELLO)

    assert result.content
    assert result.model == "gpt-4o"
    request = fake_openai.requests()[-1]
    assert request["path"] == "/openai/deployments/gpt4o-prod/chat/completions"
    assert request["query"]["api-version"] == AZURE_API_VERSION
    assert request["headers"]["api-key"] == "a" * 32


def test_azure_model_without_deployment_is_unavailable_so_the_executor_can_fall_back(
    azure_credential, fake_openai
):
    with pytest.raises(ProviderUnavailable) as info:
        chat_completion(azure_credential, model="gpt-4.1", kwargs=HELLO)

    assert info.value.fallback is True
    assert fake_openai.requests() == []


def test_extra_headers_reach_the_provider(openai_credential, fake_openai):
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    chat_completion(
        openai_credential, model="gpt-4o", kwargs=HELLO, extra_headers={"traceparent": traceparent}
    )

    assert fake_openai.requests()[-1]["headers"]["traceparent"] == traceparent


def test_list_models_through_openai_and_azure(openai_credential, azure_credential, fake_openai):
    assert "gpt-4o" in list_models(openai_credential)
    assert "o3" in list_models(azure_credential)
    assert fake_openai.requests()[-1]["path"] == "/openai/models"


def test_the_sdk_never_retries_by_itself(openai_credential, fake_openai):
    fake_openai.add_faults([{"status": 500}, {"status": 500}])

    with pytest.raises(ProviderServerError):
        chat_completion(openai_credential, model="gpt-4o", kwargs=HELLO)

    assert len(fake_openai.requests()) == 1


# -- fault classification -------------------------------------------------------------------


def test_429_is_rate_limited_with_retry_after_parsed(openai_credential, fake_openai):
    fake_openai.add_faults([{"status": 429, "retry_after": 1.5}])

    with pytest.raises(ProviderRateLimited) as info:
        chat_completion(openai_credential, model="gpt-4o", kwargs=HELLO)

    error = info.value
    assert error.status_code == 429
    assert error.retry_after == pytest.approx(1.5)
    assert error.retryable is True
    assert error.provider == "openai"
    assert error.model == "gpt-4o"
    assert isinstance(error.__cause__, openai.RateLimitError)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_a_server_error(openai_credential, fake_openai, status):
    fake_openai.add_faults([{"status": status}])

    with pytest.raises(ProviderServerError) as info:
        chat_completion(openai_credential, model="gpt-4o", kwargs=HELLO)

    assert info.value.status_code == status
    assert info.value.retryable is True
    assert info.value.fallback is True


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, ProviderBadRequest),
        (401, ProviderAuthError),
        (403, ProviderAuthError),
        (404, ProviderBadRequest),
        (409, ProviderBadRequest),
        (422, ProviderBadRequest),
    ],
)
def test_4xx_are_not_retryable(openai_credential, fake_openai, status, error_class):
    fake_openai.add_faults([{"status": status}])

    with pytest.raises(error_class) as info:
        chat_completion(openai_credential, model="gpt-4o", kwargs=HELLO)

    assert type(info.value) is error_class
    assert info.value.status_code == status
    assert info.value.retryable is False
    assert info.value.fallback is False
    assert f"HTTP {status}" in info.value.message


def test_provider_error_message_is_carried_in_our_own_words(openai_credential, fake_openai):
    fake_openai.add_faults([{"status": 400, "message": "Unsupported parameter: 'temperature'."}])

    with pytest.raises(ProviderBadRequest) as info:
        chat_completion(openai_credential, model="gpt-4o", kwargs=HELLO)

    assert info.value.message == (
        "openai BadRequestError: HTTP 400: Unsupported parameter: 'temperature'."
    )


def test_long_provider_messages_are_truncated(openai_credential, fake_openai):
    fake_openai.add_faults([{"status": 400, "message": "word " * 500}])

    with pytest.raises(ProviderBadRequest) as info:
        chat_completion(openai_credential, model="gpt-4o", kwargs=HELLO)

    assert len(info.value.message) <= 300
    assert info.value.message.endswith("...")


def test_a_hang_past_the_configured_timeout_is_a_timeout(openai_credential, fake_openai):
    fake_openai.add_faults([{"type": "hang", "seconds": 5}])

    started = time.monotonic()
    with (
        override_settings(AI_PROVIDER_TIMEOUTS={"openai": 0.5}),
        pytest.raises(ProviderTimeout) as info,
    ):
        chat_completion(fresh(openai_credential), model="gpt-4o", kwargs=HELLO)

    assert time.monotonic() - started < 3
    assert info.value.retryable is True
    assert info.value.fallback is True
    assert isinstance(info.value.__cause__, openai.APITimeoutError)


def test_a_per_call_timeout_overrides_the_configured_one(openai_credential, fake_openai):
    fake_openai.add_faults([{"type": "hang", "seconds": 5}])

    started = time.monotonic()
    with pytest.raises(ProviderTimeout):
        chat_completion(openai_credential, model="gpt-4o", kwargs=HELLO, timeout=0.5)

    assert time.monotonic() - started < 3


def test_the_client_timeout_comes_from_settings(openai_credential, azure_credential):
    with override_settings(AI_PROVIDER_TIMEOUTS={"openai": 12.0, "azure_openai": 34.0}):
        assert client_for_credential(openai_credential).timeout == 12.0
        assert client_for_credential(azure_credential).timeout == 34.0
    with override_settings(AI_PROVIDER_TIMEOUTS={}):
        assert client_for_credential(openai_credential).timeout == 30.0
    assert client_for_credential(openai_credential).max_retries == 0


def test_a_connection_reset_is_a_connection_error(openai_credential, fake_openai):
    fake_openai.add_faults([{"type": "reset"}])

    with pytest.raises(ProviderConnectionError) as info:
        chat_completion(openai_credential, model="gpt-4o", kwargs=HELLO)

    assert info.value.retryable is True
    assert info.value.status_code is None


def test_a_truncated_body_is_a_connection_error(openai_credential, fake_openai):
    fake_openai.add_faults([{"type": "truncate"}])

    with pytest.raises(ProviderConnectionError):
        chat_completion(openai_credential, model="gpt-4o", kwargs=HELLO)


def test_a_refused_connection_is_a_connection_error(brand, make_openai_credential):
    credential = make_openai_credential(brand, api_base="http://127.0.0.1:9/v1")

    with pytest.raises(ProviderConnectionError):
        chat_completion(credential, model="gpt-4o", kwargs=HELLO)


def test_a_malformed_200_body_is_a_server_error(openai_credential, fake_openai):
    fake_openai.add_faults([{"type": "malformed"}])

    with pytest.raises(ProviderServerError) as info:
        chat_completion(openai_credential, model="gpt-4o", kwargs=HELLO)

    assert "malformed response body" in info.value.message
    assert info.value.retryable is True


def test_a_response_without_usage_gives_usage_none(openai_credential, fake_openai):
    fake_openai.add_faults([{"type": "no_usage"}])

    result = chat_completion(openai_credential, model="gpt-4o", kwargs=HELLO)

    assert result.content
    assert result.usage is None


def test_list_models_failures_are_classified_too(openai_credential, fake_openai):
    fake_openai.configure(valid_keys=["some-other-key"])

    with pytest.raises(ProviderAuthError) as info:
        list_models(openai_credential)

    assert info.value.status_code == 401


def test_streaming_is_refused_here(openai_credential):
    with pytest.raises(ValueError, match="does not stream"):
        chat_completion(openai_credential, model="gpt-4o", kwargs={**HELLO, "stream": True})


# -- retry-after parsing ----------------------------------------------------------------------


def test_retry_after_header_forms():
    assert parse_retry_after({"retry-after-ms": "250"}) == pytest.approx(0.25)
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == pytest.approx(0.25)
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    in_ten = formatdate(time.time() + 10, usegmt=True)
    assert parse_retry_after({"retry-after": in_ten}) == pytest.approx(10, abs=1.5)
    past = formatdate(time.time() - 100, usegmt=True)
    assert parse_retry_after({"retry-after": past}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after(None) is None


# -- secrets never leak --------------------------------------------------------------------


def test_an_error_echoing_the_key_does_not_carry_it(openai_credential, fake_openai):
    # Real providers echo (parts of) the key in 401 messages.
    fake_openai.add_faults(
        [{"status": 401, "message": f"Incorrect API key provided: {API_KEY}. See docs."}]
    )

    with pytest.raises(ProviderAuthError) as info:
        chat_completion(openai_credential, model="gpt-4o", kwargs=HELLO)

    error = info.value
    for text in (error.message, str(error), repr(error)):
        assert API_KEY not in text
        assert API_KEY[3:20] not in text
    assert "[redacted]" in error.message


@pytest.mark.parametrize("cut_at", [8, 16, 24])
def test_a_key_straddling_the_message_cut_leaves_no_fragment(
    brand, make_openai_credential, fake_openai, cut_at
):
    """The message is cut at 300 characters: the key is scrubbed before the cut (cut
    first, the part of a 32-character key before the cut was no longer key-like)."""
    key = "0123456789abcdef0123456789abcdef"  # an Azure-style key: no sk- prefix
    credential = make_openai_credential(brand, api_key=key)
    probe = "openai AuthenticationError: HTTP 401: "
    filler = "x " * ((297 - len(probe) - cut_at) // 2)
    fake_openai.add_faults([{"status": 401, "message": filler + key + " rest"}])
    with pytest.raises(ProviderAuthError) as info:
        chat_completion(credential, model="gpt-4o", kwargs=HELLO)
    assert key[:8] not in info.value.message
    assert len(info.value.message) <= 300


def test_partially_masked_key_echoes_are_scrubbed():
    text = "Incorrect API key provided: sk-proj-abc1********************wxyz."
    assert "abc1" not in scrub(text)
    azure_key = "0123456789abcdef0123456789abcdef"
    assert azure_key not in scrub(f"key {azure_key} denied")


def test_no_log_line_carries_the_key(brand, make_openai_credential, fake_openai, caplog):
    caplog.set_level(logging.DEBUG)
    credential = make_openai_credential(brand)
    chat_completion(credential, model="gpt-4o", kwargs=HELLO)
    fake_openai.add_faults([{"status": 401, "message": f"bad key {API_KEY}"}])
    with pytest.raises(ProviderAuthError):
        chat_completion(credential, model="gpt-4o", kwargs=HELLO)
    credential_update(credential=credential, api_key=API_KEY + "NEW")

    assert caplog.records
    assert API_KEY not in caplog.text
    for record in caplog.records:
        assert API_KEY not in repr(record.__dict__)


# -- client cache ---------------------------------------------------------------------------


def test_the_client_is_reused_across_requests(openai_credential):
    first = client_for_credential(openai_credential)

    assert client_for_credential(openai_credential) is first
    assert client_for_credential(fresh(openai_credential)) is first


def test_a_new_client_is_built_after_the_key_changes(openai_credential, fake_openai):
    first = client_for_credential(openai_credential)

    updated = credential_update(credential=openai_credential, api_key="sk-test-rotated-key-0002")

    second = client_for_credential(fresh(updated))
    assert second is not first
    assert second.api_key == "sk-test-rotated-key-0002"
    chat_completion(fresh(updated), model="gpt-4o", kwargs=HELLO)
    assert fake_openai.requests()[-1]["headers"]["authorization"] == (
        "Bearer sk-test-rotated-key-0002"
    )


def test_a_new_client_is_built_after_the_endpoint_changes(openai_credential, fake_openai):
    first = client_for_credential(openai_credential)

    updated = credential_update(credential=openai_credential, api_base=fake_openai.root_url + "/x")

    assert client_for_credential(fresh(updated)) is not first


def test_concurrent_threads_share_a_few_clients_each_thread_always_the_same(openai_credential):
    """One client per shard (``CLIENT_SHARDS``), not per thread, nor one for all: a thread
    keeps its shard, so its calls reuse one client and its keep-alive connections."""
    credential = fresh(openai_credential)
    threads_count = 3 * CLIENT_SHARDS
    seen: dict[int, list[object]] = {}
    barrier = threading.Barrier(threads_count)

    def grab(index: int) -> None:
        barrier.wait()
        seen[index] = [client_for_credential(credential) for _ in range(3)]

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(seen) == threads_count
    assert all(len({id(client) for client in clients}) == 1 for clients in seen.values())
    assert len({id(clients[0]) for clients in seen.values()}) == CLIENT_SHARDS


def test_an_undecryptable_credential_fails_as_an_auth_error_without_calling(
    openai_credential, fake_openai
):
    ProviderCredential.objects.filter(pk=openai_credential.pk).update(encrypted_api_key="garbage")

    with pytest.raises(ProviderAuthError) as info:
        chat_completion(fresh(openai_credential), model="gpt-4o", kwargs=HELLO)

    assert "cannot be decrypted" in info.value.message
    assert fake_openai.requests() == []


# -- streams: the provider's chunks in batches, unparsed -------------------------------------


def test_sse_data_splits_complete_events_and_keeps_the_rest():
    buffer = (
        b'data: {"a":1}\n\n'
        b": a comment, no data\n\n"
        b'event: message\ndata: {"b":\ndata: 2}\n\n'  # two data lines, joined by \n
        b'data:{"c":3}\n\n'  # no space after the colon
        b'data: {"d":'
    )
    datas, rest, done = sse_data(buffer)
    assert datas == [b'{"a":1}', b'{"b":\n2}', b'{"c":3}']
    assert rest == b'data: {"d":'
    assert done is False
    assert sse_data(rest + b"4}\n\ndata: [DONE]\n\ndata: ignored\n\n") == (
        [b'{"d":4}'],
        b"",
        True,
    )


def test_sse_line_ends_normalizes_crlf_and_cr_across_reads():
    assert sse_line_ends(b"data: 1\r\n\r\ndata: 2\r\rdata: 3") == (b"data: 1\n\ndata: 2\n\ndata: 3")
    # A CR at the end of a read may be the first half of a CRLF: kept for the next read.
    first = sse_line_ends(b"data: 1\r\n\r")
    assert first == b"data: 1\n\r"
    assert sse_line_ends(first + b"\ndata: 2") == b"data: 1\n\ndata: 2"


class _SSEHandler(BaseHTTPRequestHandler):
    """An OpenAI-compatible upstream that streams with CRLF line ends, in pieces, then sends
    an error object mid-stream."""

    pieces: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for piece in self.pieces:
            self.wfile.write(piece)
            self.wfile.flush()
            time.sleep(0.05)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sse_upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SSEHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _chunk(content: str) -> bytes:
    return json.dumps({"choices": [{"index": 0, "delta": {"content": content}}]}).encode()


def test_a_stream_is_read_in_batches_and_an_error_chunk_raises(
    brand, make_openai_credential, sse_upstream
):
    _SSEHandler.pieces = [
        b"data: " + _chunk("Hel") + b"\r\n\r\ndata: " + _chunk("lo") + b"\r",  # CR | LF
        b"\n\r\n: keep-alive\r\n\r\n",
        b"data: " + json.dumps({"error": {"message": "overloaded mid-stream"}}).encode(),
        b"\r\n\r\n",
    ]
    port = sse_upstream.server_address[1]
    credential = make_openai_credential(brand, api_base=f"http://127.0.0.1:{port}/v1")
    stream = chat_completion_stream(
        fresh(credential), model="gpt-4o", kwargs={**HELLO, "max_tokens": 5}
    )
    assert stream.first == [_chunk("Hel")]
    batches = stream.batches()
    assert next(batches) == [_chunk("Hel")]
    assert next(batches) == [_chunk("lo")]
    with pytest.raises(ProviderServerError):  # as the SDK's own stream raises it
        next(batches)
    stream.close()

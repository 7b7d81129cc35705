"""stream: true through the gateway: relayed as it arrives, recorded at the end, always."""

import json
import socket
import time
from decimal import Decimal

import openai
import pytest

from ai_core.models import AIJob
from ai_openai.models import OpenAIJob
from ai_openai.tokens import count_text_tokens
from ai_providers.budget_models import BudgetCounter
from ai_usage.models import UsageRecord
from tests.workers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Tell me a story"}]


@pytest.fixture
def key(api_client, chat_ready):
    return api_client.post("/ai/api-keys/", {"name": "stream"}, format="json").json()["key"]


@pytest.fixture
def sdk(live_server, key):
    return openai.OpenAI(base_url=f"{live_server.url}/ai/v1", api_key=key, max_retries=0)


def test_streamed_call_relays_chunks_and_records_usage_from_the_final_chunk(
    sdk, fake_openai, brand
):
    chunks = list(
        sdk.chat.completions.create(
            model="gpt-4o", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices]) > 1
    final = chunks[-1]
    assert final.choices == []
    assert final.usage.completion_tokens > 0
    job = AIJob.objects.get(brand=brand)
    assert job.status == "completed"
    assert job.result["content"] == text
    assert job.result["usage_source"] == "provider"
    record = UsageRecord.objects.get(job=job)
    assert record.completion_tokens == final.usage.completion_tokens
    assert record.total_cost > 0
    assert BudgetCounter.objects.get(brand=brand, metric="cost").reserved == 0


def test_usage_chunk_is_only_forwarded_when_asked(sdk, fake_openai):
    chunks = list(sdk.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    assert all(c.choices for c in chunks)
    assert OpenAIJob.objects.get().total_tokens > 0  # still recorded


def test_upstream_without_usage_is_counted_with_the_tokenizer(sdk, fake_openai, brand):
    fake_openai.add_faults([{"type": "no_usage"}])
    chunks = list(sdk.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    job = AIJob.objects.get(brand=brand)
    assert job.result["usage_source"] == "tokenizer"
    assert job.result["usage"]["completion_tokens"] == count_text_tokens(text, "o200k_base") > 0
    assert Decimal(job.result["cost_usd"]) > 0


def test_a_client_that_asked_for_usage_gets_the_counted_usage_when_upstream_sent_none(
    sdk, fake_openai, brand
):
    fake_openai.add_faults([{"type": "no_usage"}])
    chunks = list(
        sdk.chat.completions.create(
            model="gpt-4o",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == []
    job = AIJob.objects.get(brand=brand)
    assert job.result["usage_source"] == "tokenizer"
    assert last.usage.completion_tokens == job.result["usage"]["completion_tokens"] > 0
    assert last.usage.total_tokens == job.result["usage"]["total_tokens"]
    assert last.id == chunks[0].id
    assert sum(1 for c in chunks if c.usage is not None) == 1


def test_client_disconnect_mid_stream_still_records_usage(live_server, key, fake_openai, brand):
    fake_openai.configure(stream_chunk_delay_ms=100, completion_tokens=200)
    host, port = live_server.url.removeprefix("http://").split(":")
    body = json.dumps({"model": "gpt-4o", "messages": HELLO, "stream": True}).encode()
    client = socket.create_connection((host, int(port)), timeout=10)
    client.sendall(
        f"POST /ai/v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n".encode()
        + f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    first = client.recv(4096)
    assert b"200" in first.split(b"\r\n", 1)[0]
    client.close()  # hang up mid-stream
    # The job's status and its usage record, awaited together (once in a full run on
    # SQLite the first was seen without the second: not explained yet).
    assert wait_until(
        lambda: (
            AIJob.objects.filter(brand=brand, status="completed").exists()
            and UsageRecord.objects.filter(job__brand=brand).exists()
        ),
        timeout=20,
    )
    job = AIJob.objects.get(brand=brand)
    assert UsageRecord.objects.filter(job=job).count() == 1
    assert job.result["usage"]["total_tokens"] > 0
    assert BudgetCounter.objects.get(brand=brand, metric="cost").reserved == 0
    time.sleep(0.2)


def test_stream_errors_before_the_first_byte_are_openai_errors(sdk, fake_openai, brand):
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="o3", messages=HELLO, temperature=1, stream=True)
    fake_openai.add_faults([{"status": 500}] * 4)
    with pytest.raises(openai.InternalServerError):
        list(sdk.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    job = AIJob.objects.get(brand=brand)
    assert job.status == "failed"
    assert BudgetCounter.objects.get(brand=brand, metric="cost").reserved == 0


def test_a_stream_holds_no_pooled_connection_while_it_is_relayed(key, fake_openai, brand):
    """Streams last seconds: the thread relaying one gives its connection back to the pool
    meanwhile (else a few streams per worker would take every pooled connection)."""
    from django.db import connection

    from ai_openai.services import chat_stream_open, chat_stream_relay
    from tests.observability.test_db_pool import require_pool

    require_pool()
    job, owner, prepared, execution = chat_stream_open(
        brand=brand, body={"model": "gpt-4o", "messages": HELLO}
    )
    relay = chat_stream_relay(
        job=job, owner=owner, prepared=prepared, execution=execution, include_usage=True
    )
    assert next(relay).startswith(b"data: ")
    assert connection.connection is None  # back in the pool while the chunks flow
    rest = list(relay)
    assert rest[-1] == b"data: [DONE]\n\n"
    job.refresh_from_db()
    assert job.status == "completed"
    assert UsageRecord.objects.filter(job=job).count() == 1


def test_a_stream_cut_mid_way_is_billed_for_what_was_streamed(sdk, fake_openai, brand):
    """The upstream hangs up half-way: the client gets the chunks that came, then an error
    event; the job is failed (with the provider's error), and billed for the streamed text
    counted by the tokenizer."""
    fake_openai.configure(completion_tokens=40)
    fake_openai.add_faults([{"type": "truncate"}])
    stream = sdk.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    received = []

    def read() -> None:
        received.extend(stream)

    with pytest.raises(openai.APIError, match="connection|Connection"):
        read()
    text = "".join(c.choices[0].delta.content or "" for c in received if c.choices)
    assert text
    job = AIJob.objects.get(brand=brand)
    assert job.status == "failed"
    assert job.failed_at is not None
    assert job.error["error_code"] == "PROVIDER_ERROR"
    assert job.result["content"] == text
    assert job.result["usage_source"] == "tokenizer"
    assert job.result["usage"]["completion_tokens"] == count_text_tokens(text, "o200k_base")
    record = UsageRecord.objects.get(job=job)
    assert record.total_cost > 0
    cost = BudgetCounter.objects.get(brand=brand, metric="cost")
    assert (cost.reserved, cost.spent) == (0, record.total_cost)


def test_chunks_are_relayed_as_the_provider_sent_them(key, fake_openai, brand):
    """Each chunk goes out as the provider's JSON, not parsed and serialized again: the
    fake server's compact JSON with its key order, ``usage: null`` included."""
    from ai_openai.services import chat_stream_open, chat_stream_relay

    job, owner, prepared, execution = chat_stream_open(
        brand=brand, body={"model": "gpt-4o", "messages": HELLO}
    )
    relay = chat_stream_relay(
        job=job, owner=owner, prepared=prepared, execution=execution, include_usage=True
    )
    pieces = list(relay)
    assert pieces[-1] == b"data: [DONE]\n\n"
    events = b"".join(pieces[:-1]).split(b"\n\n")[:-1]
    chunks = [event.removeprefix(b"data: ") for event in events]
    assert len(chunks) > 3
    first = json.loads(chunks[0])
    assert chunks[0] == json.dumps(first, separators=(",", ":")).encode()  # as sent
    assert list(first)[:2] == ["id", "object"]
    assert first["usage"] is None
    last = json.loads(chunks[-1])
    assert last["usage"]["total_tokens"] > 0
    assert last["choices"] == []
    assert fake_openai.requests()[-1]["json"]["stream_options"] == {"include_usage": True}


def test_a_stream_whose_job_is_cancelled_mid_way_is_still_recorded_and_billed(
    api_client, key, fake_openai, brand
):
    """The stream already flowing goes on to its end after the cancellation: its
    reservation is kept meanwhile, what it streamed is recorded and charged once, and the
    job stays cancelled (as for a non-streamed call that finishes after its
    cancellation)."""
    from ai_openai.services import chat_stream_open, chat_stream_relay

    fake_openai.configure(completion_tokens=30)
    job, owner, prepared, execution = chat_stream_open(
        brand=brand,
        body={"model": "gpt-4o", "messages": HELLO, "stream_options": {"include_usage": True}},
    )
    relay = chat_stream_relay(
        job=job, owner=owner, prepared=prepared, execution=execution, include_usage=True
    )
    first = next(relay)
    assert first.startswith(b"data: ")
    cancel = api_client.post(f"/ai/jobs/{job.public_id}/cancel/")
    assert cancel.status_code == 200, cancel.content
    cost = BudgetCounter.objects.get(brand=brand, metric="cost")
    assert cost.reserved > 0  # kept: the stream is still being charged
    assert cost.spent == 0
    rest = list(relay)
    assert rest[-1] == b"data: [DONE]\n\n"
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert job.result is None
    record = UsageRecord.objects.get(job=job)
    assert record.completion_tokens == 30
    assert record.total_cost > 0
    cost.refresh_from_db()
    assert cost.spent == record.total_cost
    assert cost.reserved == 0
    assert OpenAIJob.objects.filter(job=job).count() == 1


@pytest.mark.parametrize(("provider_says", "we_say"), [(2.5, "3"), (None, "8")])
def test_a_rate_limited_stream_gets_the_providers_retry_after_rounded_up(
    sdk, fake_openai, settings, provider_says, we_say
):
    settings.AI_RETRY_MAX_WAIT = 1  # the provider's delay is not waited for: 429 at once
    settings.AI_RATE_LIMIT_REQUEUE_DELAY = 7.5
    fault = {"status": 429, **({"retry_after": provider_says} if provider_says else {})}
    fake_openai.add_faults([fault] * 4)
    with pytest.raises(openai.RateLimitError) as info:
        list(sdk.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    assert info.value.response.headers["Retry-After"] == we_say
    assert info.value.response.json()["retry_after"] == int(we_say)

"""SPEC §9: JSON log lines with trace ids, correlated from the request to the provider
call, and sanitized: no key, no token, no message content unless AI_LOG_CONTENT."""

import json
import logging

import pytest
from rest_framework.test import APIClient

from megahub.logging import CONTENT_REDACTED, REDACTED, JsonFormatter
from tests.conftest import API_KEY

pytestmark = pytest.mark.django_db

SECRET_CONTENT = "Quarterly-plan-marmalade-7f3a"
MESSAGES = [
    {"role": "system", "content": f"You advise on {SECRET_CONTENT}."},
    {"role": "user", "content": f"Summarise {SECRET_CONTENT} for the board."},
]


def jwt_of(client) -> str:
    return client._credentials["HTTP_AUTHORIZATION"].removeprefix("Bearer ")


def chat(client, **body):
    return client.post(
        "/ai/openai/chat/", {"model": "gpt-4o", "messages": MESSAGES, **body}, format="json"
    )


def parsed(lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in lines]


def test_log_lines_carry_trace_ids_and_never_a_key_a_token_or_content(
    api_client, chat_ready, fake_openai, json_logs
):
    # The provider answers an auth error echoing the key, then a bad request echoing the
    # prompt (as real providers do), then a server error; then one call succeeds.
    fake_openai.add_faults([{"status": 401, "message": f"Incorrect API key provided: {API_KEY}."}])
    assert chat(api_client).status_code >= 400
    fake_openai.add_faults([{"status": 400, "message": f"Cannot process '{SECRET_CONTENT}'"}])
    assert chat(api_client).status_code >= 400
    fake_openai.add_faults([{"status": 500}] * 4)
    assert chat(api_client).status_code == 502
    assert chat(api_client, temperature=9).status_code == 400  # refused before any call
    assert chat(api_client).status_code == 200

    entries = parsed(json_logs.lines)  # every line is one JSON object
    events = {entry["event"] for entry in entries}
    assert {"job.attempt.failed", "job.attempt.succeeded", "job.failed", "http.request"} <= events
    request_lines = [e for e in entries if e["logger"] != "ai_core.fake_openai"]
    assert all(entry["trace_id"] for entry in request_lines), [
        entry for entry in request_lines if not entry["trace_id"]
    ]
    everything = "\n".join(json_logs.lines)
    assert API_KEY not in everything
    assert API_KEY[-12:] not in everything
    assert jwt_of(api_client) not in everything
    assert jwt_of(api_client).split(".")[2] not in everything  # not even the signature
    assert SECRET_CONTENT not in everything


def test_content_is_logged_only_when_ai_log_content_is_true(settings):
    def line(**extra):
        record = logging.LogRecord("megahub.test", logging.INFO, __file__, 1, "chat.sent", (), None)
        record.__dict__.update(extra)
        return json.loads(JsonFormatter().format(record))

    fields = {
        "messages": MESSAGES,
        "api_key": API_KEY,
        "headers": {"Authorization": "Bearer abc.def.ghi", "X-Brand-ID": "acme"},
        "note": f"retrying with key {API_KEY}",
        "prompt_tokens": 12,
    }
    quiet = line(**fields)
    assert quiet["messages"] == CONTENT_REDACTED
    assert quiet["api_key"] == REDACTED
    assert quiet["headers"] == {"Authorization": REDACTED, "X-Brand-ID": "acme"}
    assert quiet["note"] == f"retrying with key {REDACTED}"
    assert quiet["prompt_tokens"] == 12  # numbers are never secrets

    settings.AI_LOG_CONTENT = True
    loud = line(**fields)
    assert loud["messages"] == MESSAGES
    assert loud["api_key"] == REDACTED  # secrets stay hidden whatever the setting


def test_exception_text_and_client_library_arguments_are_scrubbed():
    try:
        raise RuntimeError(f"upstream said: Authorization: Bearer {API_KEY}")
    except RuntimeError:
        record = logging.LogRecord(
            "megahub.test", logging.ERROR, __file__, 1, "call.crashed", (), exc_info=True
        )
        import sys

        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert API_KEY not in json.dumps(entry)
    assert entry["exc_type"] == "RuntimeError"

    sdk = logging.LogRecord(
        "openai._base_client",
        logging.DEBUG,
        __file__,
        1,
        "Request options: %s",
        ({"json_data": {"messages": MESSAGES}},),
        None,
    )
    assert json.loads(JsonFormatter().format(sdk))["event"] == "Request options: %s"


def test_one_trace_id_from_the_request_to_the_job_and_the_provider(
    api_client, chat_ready, fake_openai, json_logs
):
    response = chat(api_client)
    assert response.status_code == 200
    trace_id = response["X-Trace-ID"]
    job_id = response.json()["job_id"]
    entries = parsed(json_logs.lines)
    mine = [e for e in entries if e["trace_id"] == trace_id]
    assert {"job.created", "job.attempt.started", "job.attempt.succeeded", "job.completed"} <= {
        e["event"] for e in mine
    }
    assert {"http.request"} <= {e["event"] for e in mine}
    assert all(e["trace_id"] == trace_id for e in entries if e.get("job_id") == job_id)
    chats = [r for r in fake_openai.requests() if r["path"].endswith("/chat/completions")]
    assert chats[-1]["headers"]["traceparent"].split("-")[1] == trace_id


def test_a_streamed_gateway_call_logs_its_end_under_the_requests_trace(
    api_client, chat_ready, fake_openai, json_logs
):
    """The relay runs after the view has returned: its job completion, usage and
    settlement lines still carry the request's trace and span ids."""
    key = api_client.post("/ai/api-keys/", {"name": "s"}, format="json").json()["key"]
    incoming = "feedfeedfeedfeedfeedfeedfeedfeed"
    response = APIClient().post(
        "/ai/v1/chat/completions",
        {"model": "gpt-4o", "messages": MESSAGES, "stream": True},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
        HTTP_TRACEPARENT=f"00-{incoming}-1234567812345678-01",
    )
    assert b"".join(response.streaming_content).endswith(b"data: [DONE]\n\n")
    job_id = response["X-MegaHub-Job-ID"]
    ended = [
        e
        for e in parsed(json_logs.lines)
        if e.get("job_id") == job_id and e["event"] in ("job.completed", "usage.recorded")
    ]
    assert {e["event"] for e in ended} == {"job.completed", "usage.recorded"}
    assert all(e["trace_id"] == incoming for e in ended)
    assert all(e["span_id"] for e in ended)


def test_an_incoming_traceparent_is_continued_to_the_provider(api_client, chat_ready, fake_openai):
    incoming = "0af7651916cd43dd8448eb211c80319c"
    response = api_client.post(
        "/ai/openai/chat/",
        {"model": "gpt-4o", "messages": MESSAGES},
        format="json",
        HTTP_TRACEPARENT=f"00-{incoming}-b7ad6b7169203331-01",
    )
    assert response["X-Trace-ID"] == incoming
    assert fake_openai.requests()[-1]["headers"]["traceparent"].split("-")[1] == incoming


def test_with_debug_every_line_is_json_even_djangos_and_warnings():
    """Django's default config adds a plain-text console handler to ``django`` when DEBUG
    is on (as `dev.py run` sets it): every 4xx was logged twice, once as plain text."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import logging, warnings, django; django.setup();"
        "logging.getLogger('django.request').warning('Not Found: %s', '/ai/nope/');"
        "warnings.warn('a warning of Python')"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "megahub.settings", "DEBUG": "true"}
    env.pop("MEGAHUB_TESTING", None)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    events = [json.loads(line)["event"] for line in lines]  # each line is JSON
    assert events.count("Not Found: /ai/nope/") == 1
    assert any("a warning of Python" in event for event in events)

"""What the live-API commands do without a server: argument checks, unreachable API,
percentiles. (The end-to-end runs are in test_live_api_commands.)"""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from ai_openai.management.commands._api_client import ApiResponse, redact
from ai_openai.management.commands.ai_load_test import percentile
from tests.workers import free_port


def test_unreachable_api_fails_with_a_clear_message():
    url = f"http://127.0.0.1:{free_port()}"

    out = StringIO()
    with pytest.raises(CommandError, match=f"Cannot authenticate as 'demo' at {url}: no answer"):
        call_command("test_ai_endpoints", "--base-url", url, "--password", "pw", stdout=out)

    assert "FAIL  auth.token" in out.getvalue()


def test_a_password_is_required(monkeypatch):
    monkeypatch.delenv("MEGAHUB_PASSWORD", raising=False)
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)

    with pytest.raises(CommandError, match="No password"):
        call_command("ai_load_test", "--base-url", "http://127.0.0.1:1")


def test_base_url_must_be_http():
    with pytest.raises(CommandError, match="must be an http"):
        call_command("test_ai_endpoints", "--base-url", "file:///etc/passwd", "--password", "x")


@pytest.mark.parametrize("option", ["--concurrent=0", "--requests=0"])
def test_load_test_rejects_empty_runs(option):
    with pytest.raises(CommandError, match="at least 1"):
        call_command("ai_load_test", option, "--password", "x")


def test_nearest_rank_percentiles():
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, p) for p in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) == 0.0


def test_excerpts_mask_tokens_and_keys():
    response = ApiResponse(
        status=200,
        body={"access": "eyJhbGciOi", "refresh": "eyJr", "nested": [{"api_key": "sk-x"}]},
        elapsed_ms=1.0,
    )
    assert "eyJ" not in response.excerpt()
    assert "sk-x" not in response.excerpt()
    assert redact({"key": "k", "name": "n"}) == {"key": "***", "name": "n"}

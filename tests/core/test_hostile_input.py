"""SPEC §3 on hostile bodies and URLs: a clear JSON error before anything is written,
never a 500 (and never a row that later breaks a list)."""

import json

import pytest
from rest_framework.test import APIClient

from ai_core.models import AIJob
from tests.core.test_auth import assert_error

pytestmark = pytest.mark.django_db

JOB = {"job_type": "chat_completion", "priority": "normal"}


def post_raw(client: APIClient, path: str, raw: str, **headers):
    return client.generic("POST", path, raw.encode(), content_type="application/json", **headers)


@pytest.mark.parametrize(
    "raw",
    [
        # An unpaired surrogate: valid JSON, but no UTF-8 text can hold it.
        '{"job_type": "chat_completion", "input": {"prompt": "\\ud800"}}',
        '{"job_type": "chat_completion", "input": {"prompt": "x"}, "metadata": {"\\udc00": 1}}',
        # NUL, which PostgreSQL's text columns refuse.
        '{"job_type": "chat_completion", "input": {"prompt": "a\\u0000b"}}',
    ],
)
def test_unstorable_strings_are_a_parse_error_and_write_nothing(api_client, chat_ready, raw):
    body = assert_error(post_raw(api_client, "/ai/jobs/", raw), 400, "PARSE_ERROR")
    assert "surrogate" in body["detail"] or "NUL" in body["detail"]
    assert AIJob.objects.count() == 0
    listed = api_client.get("/ai/jobs/")
    assert listed.status_code == 200
    assert listed.json()["count"] == 0


def test_a_literal_backslash_u0000_is_ordinary_text(api_client, chat_ready):
    raw = json.dumps({**JOB, "input": {"prompt": "the escape \\u0000 in a sentence"}})
    assert "\\\\u0000" in raw
    assert post_raw(api_client, "/ai/jobs/", raw).status_code == 201


@pytest.mark.parametrize("path", ["/ai/openai/chat/", "/ai/jobs/batch/"])
def test_surrogates_are_refused_on_chat_and_batch(api_client, chat_ready, path):
    message = '{"role": "user", "content": "\\ud83d"}'
    chat = f'{{"messages": [{message}]}}'
    raw = (
        chat
        if path == "/ai/openai/chat/"
        else f'{{"jobs": [{{"job_type": "x", "input": {chat}}}]}}'
    )

    assert_error(post_raw(api_client, path, raw), 400, "PARSE_ERROR")
    assert AIJob.objects.count() == 0


def test_gateway_refuses_surrogates_in_openai_format(api_client, chat_ready):
    # (The openai SDK cannot even encode such a body: a raw client sends it.)
    key = api_client.post("/ai/api-keys/", {"name": "k"}, format="json").json()["key"]
    raw = '{"model": "gpt-4o", "messages": [{"role": "user", "content": "\\udc00 gw"}]}'
    response = post_raw(
        APIClient(), "/ai/v1/chat/completions", raw, HTTP_AUTHORIZATION=f"Bearer {key}"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["code"] == "parse_error"
    assert "surrogate" in body["error"]["message"]
    assert AIJob.objects.count() == 0


@pytest.mark.parametrize("path", ["/ai/jobs/", "/ai/openai/chat/", "/api/auth/token/"])
def test_nesting_too_deep_is_a_parse_error(api_client, path):
    raw = "[" * 5000 + "]" * 5000
    assert_error(post_raw(api_client, path, raw), 400, "PARSE_ERROR")


@pytest.mark.parametrize("path", ["/ai/jobs/", "/api/auth/token/"])
def test_a_body_over_the_limit_is_413(api_client, path, settings):
    size = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    raw = json.dumps({**JOB, "input": {"prompt": "x", "pad": "a" * size}})
    body = assert_error(post_raw(api_client, path, raw), 413, "REQUEST_TOO_LARGE")
    assert "MiB" in body["detail"]
    assert AIJob.objects.count() == 0


@pytest.mark.parametrize("path", ["/ai/jobs/", "/ai/usage/", "/ai/v1/models", "/api/schema/"])
def test_more_query_parameters_than_accepted_is_a_400(api_client, path, settings):
    query = "&".join(["a"] * (settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    client = api_client if path.startswith("/ai/") and "/v1/" not in path else APIClient()
    body = assert_error(client.get(f"{path}?{query}"), 400, "VALIDATION_ERROR")
    assert str(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS) in body["detail"]


@pytest.mark.parametrize("path", ["/ai/jobs/", "/api/auth/token/"])
def test_more_form_fields_than_accepted_is_a_400_that_writes_nothing(api_client, path, settings):
    fields = "&".join(f"f{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    response = api_client.generic(
        "POST", path, fields.encode(), content_type="application/x-www-form-urlencoded"
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    assert AIJob.objects.count() == 0


def test_a_body_of_a_few_mib_is_accepted(api_client, chat_ready):
    """Larger than Django's default limit (2.5 MiB): a long prompt is a normal request."""
    raw = json.dumps({**JOB, "input": {"prompt": "x", "pad": "a" * (4 * 1024 * 1024)}})
    response = post_raw(api_client, "/ai/jobs/", raw)
    assert response.status_code != 413, response.content[:300]


def test_a_nul_in_a_job_id_is_a_404(api_client):
    assert_error(api_client.get("/ai/jobs/ai_job_%00/"), 404, "NOT_FOUND")


def test_errors_stay_json_with_their_code_when_a_browser_asks_for_html():
    """With DEBUG the browsable API is a renderer too, and a browser's Accept header picks
    it: the error must still be JSON with its own code (the HTML page was rewritten into a
    generic "Bad request." that lost it)."""
    from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
    from rest_framework.test import APIRequestFactory
    from rest_framework.views import APIView

    from ai_core.errors import JobTypeNotFound

    class Refusing(APIView):
        authentication_classes: list = []
        permission_classes: list = []
        renderer_classes = [JSONRenderer, BrowsableAPIRenderer]

        def get(self, request):
            raise JobTypeNotFound("Unknown job type 'nope'.", suggestions=["chat_completion"])

    html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = Refusing.as_view()(APIRequestFactory().get("/x/", HTTP_ACCEPT=html))
    response.render()
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert body["error_code"] == "JOB_TYPE_NOT_FOUND"
    assert body["suggestions"] == ["chat_completion"]


@pytest.mark.parametrize(
    ("method", "path", "body", "typo", "meant"),
    [
        ("patch", "/ai/quotas/", {"daily_budjet": "5"}, "daily_budjet", "daily_budget"),
        ("post", "/ai/api-keys/", {"name": "k", "monthly_budgt": "5"}, "monthly_budgt", None),
        (
            "post",
            "/ai/credentials/",
            {"provider": "openai", "name": "c", "api_key": "sk-" + "a" * 40, "api_url": "x"},
            "api_url",
            None,
        ),
    ],
)
def test_an_unknown_field_in_a_write_is_a_field_error_not_ignored(
    api_client, chat_ready, method, path, body, typo, meant
):
    response = getattr(api_client, method)(path, body, format="json")
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert "Unknown field." in body["field_errors"][typo][0]
    if meant:
        assert f"Did you mean '{meant}'?" in body["field_errors"][typo][0]


def test_a_credential_read_back_and_put_again_is_accepted(api_client, openai_credential):
    shown = api_client.get(f"/ai/credentials/{openai_credential.pk}/").json()
    response = api_client.put(
        f"/ai/credentials/{openai_credential.pk}/", {**shown, "name": "renamed"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "renamed"


@pytest.mark.parametrize("path", ["/health", "/metrics"])
@pytest.mark.parametrize("method", ["post", "delete"])
def test_writes_to_health_and_metrics_are_a_json_405(path, method):
    from django.test import Client

    response = getattr(Client(enforce_csrf_checks=True), method)(path)
    body = assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert method.upper() in body["detail"]
    assert response["Allow"] == "GET, HEAD, OPTIONS"
    assert Client().get(path).status_code == 200

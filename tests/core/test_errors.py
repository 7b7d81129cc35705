"""SPEC §3: every error path answers JSON of the one shape; never HTML, never a trace."""

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from .test_auth import assert_error

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/ai/nope/", "/ai/nope", "/api/nope/", "/ai", "/api/"])
def test_unknown_api_url_is_json_404(path):
    assert_error(APIClient().get(path), 404, "NOT_FOUND")


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize("path", ["/ai/nope/", "/api/nope", "/ai/v2/things/"])
def test_unknown_api_url_is_a_404_for_writes_too(method, path):
    """Not a CSRF refusal (403): a real client sends no CSRF token, so the test client must
    check CSRF as the server does."""
    client = APIClient(enforce_csrf_checks=True)
    body = assert_error(getattr(client, method)(path, {}, format="json"), 404, "NOT_FOUND")
    assert body["suggestions"] == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/ai/jobs"), ("patch", "/ai/quotas"), ("post", "/api/auth/token")],
)
def test_a_missing_trailing_slash_is_a_404_that_names_the_url(method, path):
    client = APIClient(enforce_csrf_checks=True)
    body = assert_error(getattr(client, method)(path, {}, format="json"), 404, "NOT_FOUND")
    assert body["suggestions"] == [path + "/"]
    assert f"{path}/" in body["detail"]


def test_unknown_gateway_url_is_a_404_in_both_shapes():
    """Under /ai/v1/ the body is OpenAI's (the SDK raises NotFoundError) and §3's."""
    response = APIClient(enforce_csrf_checks=True).post("/ai/v1/embeddings", {}, format="json")
    body = assert_error(response, 404, "NOT_FOUND")
    assert body["error"]["type"] == "not_found_error"
    assert body["error"]["code"] == "not_found"


def test_unknown_api_url_is_json_404_in_debug_too():
    with override_settings(DEBUG=True):
        assert_error(APIClient().get("/ai/nope/"), 404, "NOT_FOUND")


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", ["/nope", "/health/", "/metrics/", "/favicon.ico"])
def test_any_unknown_url_is_json_404_not_an_html_page(path, debug):
    """Outside /ai/ and /api/ too, and with DEBUG=true (the README's dev setup), where
    Django's page listed every URL pattern."""
    with override_settings(DEBUG=debug):
        assert_error(APIClient().get(path), 404, "NOT_FOUND")


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", ["/ai/me/", "/nope", "/health"])
def test_a_host_the_service_does_not_serve_is_a_json_400(path, debug):
    with override_settings(DEBUG=debug, ALLOWED_HOSTS=["testserver"]):
        response = APIClient().get(path, HTTP_HOST="evil.example.com")
    assert_error(response, 400, "VALIDATION_ERROR")


def test_the_admin_keeps_its_own_pages():
    response = APIClient().get("/admin/nope/")
    assert response.status_code in (302, 404)
    assert not response.get("Content-Type", "").startswith("application/json")


def test_method_not_allowed_is_json_405(api_client):
    assert_error(APIClient().get("/api/auth/token/"), 405, "METHOD_NOT_ALLOWED")
    assert_error(api_client.delete("/ai/me/"), 405, "METHOD_NOT_ALLOWED")


def test_malformed_json_is_a_clear_400():
    response = APIClient().post(
        "/api/auth/token/", data="{not json", content_type="application/json"
    )
    body = assert_error(response, 400, "PARSE_ERROR")
    assert "JSON" in body["detail"]


def test_unsupported_media_type_is_json_415():
    response = APIClient().post("/api/auth/token/", data="x", content_type="text/plain")
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.urls("tests.core.urls_for_tests")
@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", ["/ai/test/boom/", "/ai/test/boom-plain/"])
def test_unhandled_exception_is_json_500_with_trace_id_only(api_client, path, debug):
    with override_settings(DEBUG=debug):
        response = api_client.get(path)
    body = assert_error(response, 500, "INTERNAL_ERROR")
    assert len(body["trace_id"]) == 32
    assert response["X-Trace-ID"] == body["trace_id"]
    text = response.content.decode()
    assert "sk-live" not in text
    assert "Traceback" not in text
    assert "RuntimeError" not in text


def test_incoming_traceparent_is_kept():
    trace = "0af7651916cd43dd8448eb211c80319c"
    response = APIClient().get("/ai/nope/", HTTP_TRACEPARENT=f"00-{trace}-b7ad6b7169203331-01")
    assert response["X-Trace-ID"] == trace


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_TRACEPARENT": f"00-{'0' * 32}-b7ad6b7169203331-01"},  # all-zero trace id
        {"HTTP_TRACEPARENT": f"00-{'a' * 32}-{'0' * 16}-01"},  # all-zero parent id
        {"HTTP_TRACEPARENT": f"ff-{'a' * 32}-b7ad6b7169203331-01"},  # version ff
        {"HTTP_X_TRACE_ID": "-" * 18},
        {"HTTP_X_TRACE_ID": "0" * 32},
    ],
)
def test_invalid_incoming_trace_ids_are_replaced_by_a_fresh_one(headers):
    response = APIClient().get("/ai/nope/", **headers)
    trace = response["X-Trace-ID"]
    assert len(trace) == 32
    assert trace.strip("0")
    assert trace not in str(headers)


def test_schema_and_docs_are_served():
    assert APIClient().get("/api/schema/").status_code == 200
    docs = APIClient().get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()

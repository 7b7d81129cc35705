"""SPEC §5 ai_providers: /ai/credentials/ CRUD and test_connection, brand isolation, roles,
and the plaintext key in no response, log line, admin page or database column."""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from ai_core.executor import CallTarget, ExecutionFailed, execute
from ai_providers.circuit import circuit_state
from ai_providers.clients import chat_completion
from ai_providers.crypto import decrypt_api_key
from ai_providers.models import ProviderCredential
from tests.core.test_auth import assert_error

from .conftest import API_KEY, AZURE_API_VERSION, AZURE_DEPLOYMENTS

pytestmark = pytest.mark.django_db

NEW_KEY = "sk-test-REPLACEDsecret9876543210wxyz"
SECRETS = (API_KEY, NEW_KEY)
URL = "/ai/credentials/"
HELLO = [{"role": "user", "content": "hello"}]


def detail_url(credential_id: object) -> str:
    return f"{URL}{credential_id}/"


def assert_no_secret(text: str, *extra: str) -> None:
    """Neither key, nor the key minus its last four (the part the mask hides), nor any
    ciphertext given in ``extra``."""
    for secret in SECRETS:
        assert secret not in text
        assert secret[:-4] not in text
    for value in extra:
        if value:
            assert value not in text


def openai_body(fake_openai, **fields: object) -> dict:
    return {
        "provider": "openai",
        "name": "main",
        "api_key": API_KEY,
        "api_base": fake_openai.base_url,
        **fields,
    }


@pytest.fixture
def created(api_client, providers, fake_openai) -> dict:
    response = api_client.post(URL, openai_body(fake_openai), format="json")
    assert response.status_code == 201, response.content
    return response.json()


# -- CRUD ------------------------------------------------------------------------------------


def test_admin_creates_a_credential_and_sees_only_the_masked_key(
    api_client, brand, providers, fake_openai
):
    response = api_client.post(URL, openai_body(fake_openai, priority=2), format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert response["Location"] == f"/ai/credentials/{body['id']}/"
    assert body["provider"] == "openai"
    assert body["name"] == "main"
    assert body["api_base"] == fake_openai.base_url
    assert body["priority"] == 2
    assert body["is_active"] is True
    assert body["masked_key"] == "sk-...abcd"
    assert body["key_last4"] == "abcd"
    assert body["key_age_days"] == 0
    assert body["key_expired"] is False
    for field in ("created_at", "rotated_at", "key_set_at"):
        assert body[field] is not None
    assert body["last_used_at"] is None
    assert body["last_test_at"] is None
    assert "api_key" not in body
    assert "encrypted_api_key" not in body
    credential = ProviderCredential.objects.get(pk=body["id"])
    assert credential.brand == brand
    assert decrypt_api_key(credential) == API_KEY


def test_azure_credential_keeps_its_api_version_and_deployments(api_client, providers, fake_openai):
    response = api_client.post(
        URL,
        {
            "provider": "azure_openai",
            "name": "azure",
            "api_key": "a" * 32,
            "api_base": fake_openai.root_url,
            "api_version": AZURE_API_VERSION,
            "deployments": AZURE_DEPLOYMENTS,
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["api_version"] == AZURE_API_VERSION
    assert body["deployments"] == AZURE_DEPLOYMENTS
    assert body["masked_key"] == "sk-...aaaa"


def test_create_requires_the_api_key(api_client, providers, fake_openai):
    body = openai_body(fake_openai)
    del body["api_key"]

    response = api_client.post(URL, body, format="json")

    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "api_key" in error["field_errors"]
    assert not ProviderCredential.objects.exists()


def test_create_refuses_an_unknown_provider_with_suggestions(api_client, providers):
    response = api_client.post(
        URL, {"provider": "mistral", "name": "x", "api_key": API_KEY}, format="json"
    )

    error = assert_error(response, 400, "UNKNOWN_PROVIDER")
    assert "openai" in error["suggestions"]
    assert_no_secret(response.content.decode())


def test_create_reports_every_invalid_field_without_echoing_the_key(api_client, providers):
    response = api_client.post(
        URL,
        {
            "provider": "azure_openai",
            "name": "az",
            "api_key": API_KEY + " ",
            "api_base": "not a url",
        },
        format="json",
    )

    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert set(error["field_errors"]) >= {"api_key", "api_base", "api_version"}
    assert_no_secret(response.content.decode())


def test_list_shows_the_brands_credentials_with_filters(
    api_client, brand, make_openai_credential, make_azure_credential
):
    make_openai_credential(brand, name="primary")
    make_openai_credential(brand, name="spare", is_active=False, priority=5)
    make_azure_credential(brand)

    body = api_client.get(URL).json()
    assert body["count"] == 3
    assert {c["name"] for c in body["results"]} == {"primary", "spare", "azure"}

    only_openai = api_client.get(URL, {"provider": "openai"}).json()
    assert {c["name"] for c in only_openai["results"]} == {"primary", "spare"}
    inactive = api_client.get(URL, {"is_active": "false"}).json()
    assert [c["name"] for c in inactive["results"]] == ["spare"]


def test_retrieve_returns_one_credential(api_client, created):
    response = api_client.get(detail_url(created["id"]))

    assert response.status_code == 200
    assert response.json() == created


def test_patch_changes_fields_and_a_new_key_is_re_encrypted(api_client, created):
    before = ProviderCredential.objects.get(pk=created["id"])

    response = api_client.patch(
        detail_url(created["id"]), {"api_key": NEW_KEY, "priority": 3}, format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["priority"] == 3
    assert body["name"] == "main"
    assert body["key_last4"] == "wxyz"
    assert body["masked_key"] == "sk-...wxyz"
    after = ProviderCredential.objects.get(pk=created["id"])
    assert decrypt_api_key(after) == NEW_KEY
    assert after.key_set_at > before.key_set_at
    assert_no_secret(response.content.decode(), before.encrypted_api_key, after.encrypted_api_key)


def test_patch_without_a_key_keeps_the_key(api_client, created):
    response = api_client.patch(detail_url(created["id"]), {"is_active": False}, format="json")

    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert decrypt_api_key(ProviderCredential.objects.get(pk=created["id"])) == API_KEY


def test_put_replaces_the_state_and_keeps_the_key(api_client, created, fake_openai):
    response = api_client.put(
        detail_url(created["id"]),
        {"name": "renamed", "api_base": fake_openai.base_url},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["name"] == "renamed"
    assert body["priority"] == 0
    assert body["is_active"] is True
    assert decrypt_api_key(ProviderCredential.objects.get(pk=created["id"])) == API_KEY


def test_put_requires_the_name(api_client, created):
    response = api_client.put(detail_url(created["id"]), {"priority": 1}, format="json")

    assert "name" in assert_error(response, 400, "VALIDATION_ERROR")["field_errors"]


def test_the_provider_of_a_credential_cannot_change(api_client, created):
    response = api_client.patch(
        detail_url(created["id"]), {"provider": "azure_openai"}, format="json"
    )

    assert "provider" in assert_error(response, 400, "VALIDATION_ERROR")["field_errors"]
    same = api_client.patch(detail_url(created["id"]), {"provider": "openai"}, format="json")
    assert same.status_code == 200


def test_duplicate_name_is_a_field_error(api_client, created, fake_openai):
    response = api_client.post(URL, openai_body(fake_openai), format="json")

    assert "name" in assert_error(response, 400, "VALIDATION_ERROR")["field_errors"]


def test_delete_removes_the_credential(api_client, created):
    response = api_client.delete(detail_url(created["id"]))

    assert response.status_code == 204
    assert not ProviderCredential.objects.filter(pk=created["id"]).exists()
    assert_error(api_client.get(detail_url(created["id"])), 404, "NOT_FOUND")


# -- roles -----------------------------------------------------------------------------------


def test_member_reads_credentials(member_client, openai_credential):
    listing = member_client.get(URL)
    assert listing.status_code == 200
    assert [c["id"] for c in listing.json()["results"]] == [openai_credential.pk]
    assert member_client.get(detail_url(openai_credential.pk)).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "list", {"provider": "openai", "name": "m", "api_key": API_KEY}),
        ("patch", "detail", {"priority": 9}),
        ("put", "detail", {"name": "m"}),
        ("delete", "detail", None),
        ("post", "test", "credential"),
        ("post", "test", "provider"),
    ],
)
def test_member_cannot_write_or_test_credentials(
    member_client, openai_credential, fake_openai, method, path, body
):
    url = {
        "list": URL,
        "detail": detail_url(openai_credential.pk),
        "test": f"{URL}test_connection/",
    }[path]
    if body == "credential":
        body = {"credential_id": openai_credential.pk}
    elif body == "provider":
        body = {"provider": "openai"}
    before = ProviderCredential.objects.get(pk=openai_credential.pk)

    response = getattr(member_client, method)(url, body, format="json")

    assert_error(response, 403, "PERMISSION_DENIED")
    after = ProviderCredential.objects.get(pk=openai_credential.pk)
    assert (after.priority, after.name, after.last_test_at) == (before.priority, "main", None)
    assert ProviderCredential.objects.count() == 1
    assert fake_openai.requests() == []


# -- brand isolation -------------------------------------------------------------------------


@pytest.fixture
def foreign_credential(other_brand, make_openai_credential) -> ProviderCredential:
    return make_openai_credential(other_brand, name="theirs")


def test_another_brands_credentials_are_not_listed(
    api_client, openai_credential, foreign_credential
):
    body = api_client.get(URL).json()

    assert [c["id"] for c in body["results"]] == [openai_credential.pk]
    assert "theirs" not in str(body)


@pytest.mark.parametrize(
    ("method", "body"),
    [("get", None), ("patch", {"priority": 9}), ("put", {"name": "x"}), ("delete", None)],
)
def test_another_brands_credential_is_404_like_a_missing_one(
    api_client, foreign_credential, method, body
):
    missing = getattr(api_client, method)(detail_url(999_999), body, format="json")
    foreign = getattr(api_client, method)(detail_url(foreign_credential.pk), body, format="json")

    assert_error(foreign, 404, "NOT_FOUND")
    assert foreign.json() == missing.json()
    unchanged = ProviderCredential.objects.get(pk=foreign_credential.pk)
    assert (unchanged.name, unchanged.priority) == ("theirs", 0)


def test_another_brands_credential_cannot_be_tested(api_client, foreign_credential, fake_openai):
    missing = api_client.post(f"{URL}test_connection/", {"credential_id": 999_999}, format="json")
    foreign = api_client.post(
        f"{URL}test_connection/", {"credential_id": foreign_credential.pk}, format="json"
    )

    assert_error(foreign, 404, "NOT_FOUND")
    assert foreign.json() == missing.json()
    assert fake_openai.requests() == []
    assert ProviderCredential.objects.get(pk=foreign_credential.pk).last_test_at is None


def test_testing_by_provider_never_picks_another_brands_credential(
    api_client, brand, foreign_credential, fake_openai
):
    response = api_client.post(f"{URL}test_connection/", {"provider": "openai"}, format="json")

    assert_error(response, 424, "PROVIDER_NOT_CONFIGURED")
    assert fake_openai.requests() == []


def test_a_non_numeric_id_is_404(api_client, openai_credential):
    assert_error(api_client.get(detail_url("abc")), 404, "NOT_FOUND")


# -- test_connection -------------------------------------------------------------------------


def test_connection_test_calls_the_models_endpoint_through_the_sdk(
    api_client, openai_credential, fake_openai
):
    response = api_client.post(
        f"{URL}test_connection/", {"credential_id": openai_credential.pk}, format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ok"] is True
    assert body["error"] is None
    assert body["models_count"] > 0
    assert body["latency_ms"] >= 0
    assert body["credential_id"] == openai_credential.pk
    assert body["provider"] == "openai"
    [request] = fake_openai.requests()
    assert (request["method"], request["path"]) == ("GET", "/v1/models")
    assert request["headers"]["authorization"] == f"Bearer {API_KEY}"
    credential = ProviderCredential.objects.get(pk=openai_credential.pk)
    assert credential.last_test_ok is True
    assert credential.last_test_at is not None
    assert credential.last_test_latency_ms == body["latency_ms"]
    detail = api_client.get(detail_url(credential.pk)).json()
    assert detail["last_test_ok"] is True
    assert detail["last_test_error"] == ""


def test_connection_test_by_provider_uses_the_brands_first_active_credential(
    api_client, brand, make_openai_credential, fake_openai
):
    make_openai_credential(brand, name="disabled", is_active=False, priority=-1)
    chosen = make_openai_credential(brand, name="chosen", priority=1)
    make_openai_credential(brand, name="later", priority=2)

    body = api_client.post(f"{URL}test_connection/", {"provider": "openai"}, format="json").json()

    assert body["ok"] is True
    assert body["credential_id"] == chosen.pk


@pytest.mark.parametrize(
    ("fault", "error_class", "status_code"),
    [
        ({"status": 500}, "ProviderServerError", 500),
        ({"status": 429}, "ProviderRateLimited", 429),
        ({"type": "reset"}, "ProviderConnectionError", None),
        ({"status": 401}, "ProviderAuthError", 401),
    ],
)
def test_connection_test_reports_a_classified_error(
    api_client, openai_credential, fake_openai, fault, error_class, status_code
):
    fake_openai.add_faults([fault])

    response = api_client.post(
        f"{URL}test_connection/", {"credential_id": openai_credential.pk}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is False
    assert body["models_count"] is None
    assert body["error"]["error_class"] == error_class
    assert body["error"]["status_code"] == status_code
    assert body["error"]["message"]
    credential = ProviderCredential.objects.get(pk=openai_credential.pk)
    assert credential.last_test_ok is False
    assert credential.last_test_error == error_class


@override_settings(AI_CONNECTION_TEST_TIMEOUT=0.3)
def test_connection_test_times_out_as_a_classified_timeout(
    api_client, openai_credential, fake_openai
):
    fake_openai.add_faults([{"type": "hang", "seconds": 2}])

    body = api_client.post(
        f"{URL}test_connection/", {"credential_id": openai_credential.pk}, format="json"
    ).json()

    assert body["ok"] is False
    assert body["error"]["error_class"] == "ProviderTimeout"
    assert body["latency_ms"] < 2000


def test_connection_test_needs_exactly_one_of_credential_id_or_provider(
    api_client, openai_credential
):
    for payload in ({}, {"credential_id": openai_credential.pk, "provider": "openai"}):
        response = api_client.post(f"{URL}test_connection/", payload, format="json")
        assert_error(response, 400, "VALIDATION_ERROR")
    unknown = api_client.post(f"{URL}test_connection/", {"provider": "nope"}, format="json")
    assert_error(unknown, 400, "UNKNOWN_PROVIDER")


def test_a_passing_connection_test_closes_an_open_circuit(
    api_client, openai_credential, fake_openai, settings
):
    settings.REDIS_URL = ""
    settings.AI_CIRCUIT_FAILURE_THRESHOLD = 2
    fake_openai.add_faults([{"status": 503}, {"status": 503}])
    for _ in range(2):
        api_client.post(
            f"{URL}test_connection/", {"credential_id": openai_credential.pk}, format="json"
        )
    assert circuit_state(openai_credential) == "open"

    body = api_client.post(
        f"{URL}test_connection/", {"credential_id": openai_credential.pk}, format="json"
    ).json()

    assert body["ok"] is True
    assert circuit_state(openai_credential) == "closed"


# -- the plaintext key is nowhere ------------------------------------------------------------


def raw_row(credential_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM ai_providers_providercredential WHERE id = %s", [credential_id]
        )
        row = cursor.fetchone()
    assert row is not None
    return " ".join(str(value) for value in row)


def test_the_key_is_in_no_api_response(api_client, member_client, providers, fake_openai, brand):
    bodies: list[str] = []

    def call(client, method: str, url: str, body: object = None):
        response = getattr(client, method)(url, body, format="json")
        bodies.append(f"{response.status_code} {dict(response.items())} {response.content!r}")
        return response

    created = call(api_client, "post", URL, openai_body(fake_openai)).json()
    pk = created["id"]
    detail = detail_url(pk)
    call(api_client, "post", URL, openai_body(fake_openai))  # duplicate name: 400
    call(api_client, "post", URL, {**openai_body(fake_openai), "api_key": API_KEY + " x"})
    call(api_client, "get", URL)
    call(api_client, "get", detail)
    call(member_client, "get", URL)
    call(member_client, "get", detail)
    call(member_client, "patch", detail, {"api_key": NEW_KEY})  # 403
    call(api_client, "patch", detail, {"api_key": NEW_KEY})
    call(api_client, "put", detail, {"name": "main", "api_base": fake_openai.base_url})
    call(api_client, "post", f"{URL}test_connection/", {"credential_id": pk})
    fake_openai.add_faults([{"status": 401, "message": f"Incorrect API key provided: {NEW_KEY}"}])
    failed = call(api_client, "post", f"{URL}test_connection/", {"provider": "openai"})
    assert failed.json()["ok"] is False
    call(api_client, "get", "/ai/providers/")
    call(api_client, "get", "/ai/providers/health/")
    call(api_client, "delete", detail)

    token = ProviderCredential.objects.filter(pk=pk).values_list("encrypted_api_key", flat=True)
    for text in bodies:
        assert_no_secret(text, *token)
    assert len(bodies) == 15


def test_the_key_is_in_no_log_line(api_client, providers, fake_openai, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpx2", "httpcore", "megahub", "django"):
        caplog.set_level(logging.DEBUG, logger=name)

    created = api_client.post(URL, openai_body(fake_openai), format="json").json()
    pk = created["id"]
    api_client.patch(detail_url(pk), {"api_key": NEW_KEY, "priority": 1}, format="json")
    api_client.post(f"{URL}test_connection/", {"credential_id": pk}, format="json")
    fake_openai.add_faults(
        [
            {"status": 401, "message": f"Incorrect API key provided: {NEW_KEY}"},
            {"status": 500},
            {"status": 401, "message": f"Incorrect API key provided: {NEW_KEY}"},
        ]
    )
    api_client.post(f"{URL}test_connection/", {"credential_id": pk}, format="json")
    api_client.post(f"{URL}test_connection/", {"provider": "openai"}, format="json")
    credential = ProviderCredential.objects.select_related("provider").get(pk=pk)
    target = CallTarget(
        "openai",
        "gpt-4o",
        partial(chat_completion, credential, model="gpt-4o", kwargs={"messages": HELLO}),
        payload={"credential": credential},
    )
    with pytest.raises(ExecutionFailed):
        execute([target])

    assert caplog.records, "nothing was logged: the capture is not working"
    assert any(r.name.startswith(("openai", "httpx")) for r in caplog.records)
    events = {r.getMessage() for r in caplog.records}
    assert {"credential.created", "credential.updated", "credential.connection_tested"} <= events
    assert "job.attempt.failed" in events
    for record in caplog.records:
        text = f"{record.getMessage()} {record.__dict__!r}"
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        assert_no_secret(text, credential.encrypted_api_key)
    assert_no_secret(caplog.text)


@pytest.fixture
def admin_site_client(client, db):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-12345678")
    client.force_login(user)
    return client


def test_the_key_is_not_in_the_admin_pages(admin_site_client, openai_credential, api_client):
    api_client.post(
        f"{URL}test_connection/", {"credential_id": openai_credential.pk}, format="json"
    )
    credential = ProviderCredential.objects.get(pk=openai_credential.pk)

    for url in (
        "/admin/ai_providers/providercredential/",
        f"/admin/ai_providers/providercredential/{credential.pk}/change/",
        "/admin/ai_providers/providercredential/?q=abcd",
    ):
        page = admin_site_client.get(url, secure=True)
        assert page.status_code == 200
        html = page.content.decode()
        assert "sk-...abcd" in html
        assert_no_secret(html, credential.encrypted_api_key)


def test_the_key_is_not_in_the_raw_database_row(api_client, providers, fake_openai):
    pk = api_client.post(URL, openai_body(fake_openai), format="json").json()["id"]
    api_client.patch(detail_url(pk), {"api_key": NEW_KEY}, format="json")

    row = raw_row(pk)

    assert_no_secret(row)
    assert ProviderCredential.objects.get(pk=pk).encrypted_api_key in row


def test_key_age_and_expiry_flag(api_client, openai_credential):
    ProviderCredential.objects.filter(pk=openai_credential.pk).update(
        key_set_at=timezone.now() - timedelta(days=91)
    )

    body = api_client.get(detail_url(openai_credential.pk)).json()

    assert body["key_age_days"] == 91
    assert body["key_expired"] is True


def test_an_empty_patch_is_a_400_and_changes_nothing(api_client, created):
    response = api_client.patch(detail_url(created["id"]), {}, format="json")
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert "Give at least one field to change." in str(body["field_errors"])
    assert api_client.get(detail_url(created["id"])).json() == created

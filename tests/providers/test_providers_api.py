"""GET /ai/providers/: every provider, its models, and whether the current brand has
configured it (counted in the database; another brand's credentials never count)."""

from __future__ import annotations

import pytest

from tests.core.test_auth import assert_error

pytestmark = pytest.mark.django_db

URL = "/ai/providers/"


def by_code(body: dict) -> dict[str, dict]:
    return {entry["code"]: entry for entry in body["results"]}


def test_lists_every_provider_with_its_models(api_client, providers):
    response = api_client.get(URL)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 4
    assert body["next"] is None
    assert [p["code"] for p in body["results"]] == [
        "anthropic",
        "azure_openai",
        "google",
        "openai",
    ]
    openai = by_code(body)["openai"]
    assert openai["name"] == "OpenAI"
    assert openai["is_active"] is True
    assert {"o3", "gpt-4o", "gpt-4.1"} <= set(openai["models"])
    assert all(p["configured"] is False for p in body["results"])
    assert all(p["credentials_count"] == 0 for p in body["results"])


def test_configured_means_an_active_credential_of_the_brand(
    api_client, brand, make_openai_credential, make_azure_credential
):
    make_openai_credential(brand, name="main")
    make_openai_credential(brand, name="spare", is_active=False)
    make_azure_credential(brand, is_active=False)

    providers = by_code(api_client.get(URL).json())

    assert providers["openai"]["configured"] is True
    assert providers["openai"]["credentials_count"] == 2
    assert providers["openai"]["active_credentials_count"] == 1
    assert providers["azure_openai"]["configured"] is False
    assert providers["azure_openai"]["credentials_count"] == 1
    assert providers["google"]["configured"] is False


def test_another_brands_credentials_do_not_count(
    api_client, other_client, other_brand, make_openai_credential, make_azure_credential
):
    make_openai_credential(other_brand)
    make_azure_credential(other_brand)

    mine = by_code(api_client.get(URL).json())
    theirs = by_code(other_client.get(URL).json())

    assert mine["openai"]["configured"] is False
    assert mine["openai"]["credentials_count"] == 0
    assert mine["azure_openai"]["credentials_count"] == 0
    assert theirs["openai"]["configured"] is True
    assert theirs["azure_openai"]["credentials_count"] == 1


def test_members_read_providers(member_client, providers):
    assert member_client.get(URL).status_code == 200


def test_providers_need_authentication(client, providers):
    assert_error(client.get(URL), 401, "NOT_AUTHENTICATED")


def test_providers_are_read_only(api_client, providers):
    response = api_client.post(URL, {"code": "new"}, format="json")

    assert_error(response, 405, "METHOD_NOT_ALLOWED")

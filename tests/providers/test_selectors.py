"""Credential selection: per brand, per model, in provider fallback order."""

from __future__ import annotations

import pytest

from ai_providers.selectors import (
    credential_for_model,
    credential_get,
    credentials_for_brand,
    providers_for_model,
)
from ai_providers.services import credential_create
from megahub.errors import NotFound


@pytest.fixture
def make_credential(providers, fake_openai):
    def make(brand, provider_code, name="main", **fields):
        return credential_create(
            brand=brand,
            provider_code=provider_code,
            name=name,
            api_key=fields.pop("api_key", f"sk-test-{provider_code}-{name}"),
            api_base=fields.pop("api_base", fake_openai.base_url),
            **fields,
        )

    return make


def test_credentials_are_scoped_to_the_brand(brand, other_brand, make_credential):
    mine = make_credential(brand, "openai")
    make_credential(other_brand, "openai")

    assert list(credentials_for_brand(brand=brand)) == [mine]
    assert credential_get(brand=brand, credential_id=mine.pk) == mine
    with pytest.raises(NotFound):
        credential_get(brand=other_brand, credential_id=mine.pk)
    with pytest.raises(NotFound):
        credential_get(brand=brand, credential_id="nope")


def test_credential_for_model_picks_the_lowest_active_priority(brand, make_credential):
    make_credential(brand, "openai", name="backup", priority=5)
    best = make_credential(brand, "openai", name="best", priority=1)
    make_credential(brand, "openai", name="off", priority=0, is_active=False)

    assert credential_for_model(brand=brand, provider_code="openai", model="gpt-4o") == best
    assert credential_for_model(brand=brand, provider_code="openai", model="unknown-x") is None
    assert credential_for_model(brand=brand, provider_code="google", model="gpt-4o") is None


def test_azure_credential_needs_a_deployment_for_the_model(brand, azure_credential):
    assert (
        credential_for_model(brand=brand, provider_code="azure_openai", model="gpt-4o")
        == azure_credential
    )
    assert credential_for_model(brand=brand, provider_code="azure_openai", model="gpt-4.1") is None


def test_openai_models_go_to_openai_first_then_azure(brand, make_credential, azure_credential):
    google = make_credential(brand, "google")
    openai = make_credential(brand, "openai")

    targets = providers_for_model(brand=brand, model="gpt-4o")

    assert targets == [openai, azure_credential]
    assert google not in targets


def test_azure_alone_serves_a_model_it_has_deployed(brand, azure_credential):
    assert providers_for_model(brand=brand, model="o3") == [azure_credential]
    assert providers_for_model(brand=brand, model="gpt-4.1") == []


def test_a_model_of_another_family_goes_to_its_own_provider(
    brand, make_credential, azure_credential
):
    google = make_credential(brand, "google")
    make_credential(brand, "openai")

    assert providers_for_model(brand=brand, model="gemini-2.5-pro") == [google]


def test_one_credential_per_provider_and_never_another_brands(brand, other_brand, make_credential):
    make_credential(brand, "openai", name="backup", priority=9)
    best = make_credential(brand, "openai", name="best", priority=0)
    make_credential(other_brand, "openai", name="theirs", priority=-5)

    assert providers_for_model(brand=brand, model="gpt-4o") == [best]


def test_inactive_credentials_and_providers_are_skipped(brand, make_credential, azure_credential):
    from ai_providers.models import Provider

    make_credential(brand, "openai", is_active=False)
    assert providers_for_model(brand=brand, model="gpt-4o") == [azure_credential]

    Provider.objects.filter(code="azure_openai").update(is_active=False)
    assert providers_for_model(brand=brand, model="gpt-4o") == []

"""Provider seeding and credential services: validation, encryption, dates."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from ai_providers.crypto import decrypt_api_key
from ai_providers.errors import CredentialInvalid, UnknownProvider
from ai_providers.models import Provider, ProviderCredential
from ai_providers.services import (
    PROVIDER_CATALOG,
    credential_create,
    credential_delete,
    credential_mark_used,
    credential_update,
    providers_seed,
)

from .conftest import API_KEY


@pytest.mark.django_db
def test_seeding_creates_the_four_providers_and_is_idempotent():
    assert providers_seed() == (4, 0)
    assert providers_seed() == (0, 0)

    providers = {p.code: p for p in Provider.objects.all()}
    assert set(providers) == {"openai", "azure_openai", "anthropic", "google"}
    assert providers["openai"].api_base == "https://api.openai.com/v1"
    assert providers["anthropic"].api_base == "https://api.anthropic.com/v1/"
    assert providers["google"].api_base == (
        "https://generativelanguage.googleapis.com/v1beta/openai/"
    )
    assert "gpt-4o" in providers["openai"].models


@pytest.mark.django_db
def test_seeding_repairs_drift_but_keeps_admin_choices():
    providers_seed()
    Provider.objects.filter(code="openai").update(
        name="Renamed", models=["my-finetune"], is_active=False
    )

    assert providers_seed() == (0, 1)

    openai = Provider.objects.get(code="openai")
    assert openai.name == "OpenAI"
    assert openai.is_active is False
    assert openai.models[0] == "my-finetune"
    assert set(PROVIDER_CATALOG[0]["models"]) <= set(openai.models)
    assert providers_seed() == (0, 0)


@pytest.mark.django_db
def test_creating_a_credential_seeds_a_missing_provider(brand, fake_openai):
    credential = credential_create(
        brand=brand, provider_code="google", name="g", api_key="AIza-test-key-123456"
    )
    assert credential.provider.code == "google"


def test_create_stores_the_key_encrypted_and_dated(openai_credential):
    assert openai_credential.pk is not None
    assert openai_credential.encrypted_api_key
    assert openai_credential.key_last4 == API_KEY[-4:]
    assert openai_credential.key_set_at is not None
    assert openai_credential.rotated_at is not None
    assert openai_credential.last_used_at is None
    stored = ProviderCredential.objects.get(pk=openai_credential.pk)
    assert decrypt_api_key(stored) == API_KEY


def test_an_unknown_provider_is_a_clear_400(brand, providers):
    with pytest.raises(UnknownProvider) as info:
        credential_create(brand=brand, provider_code="mistral", name="m", api_key=API_KEY)

    error = info.value
    assert error.status_code == 400
    assert error.error_code == "UNKNOWN_PROVIDER"
    assert "provider" in error.field_errors
    assert error.suggestions == ["openai", "azure_openai", "anthropic", "google"]


def test_a_disabled_provider_takes_no_new_credentials(brand, providers):
    Provider.objects.filter(code="anthropic").update(is_active=False)

    with pytest.raises(CredentialInvalid) as info:
        credential_create(brand=brand, provider_code="anthropic", name="a", api_key=API_KEY)

    assert "provider" in info.value.field_errors


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"api_base": "ftp://example.com/v1"}, "api_base"),
        ({"api_base": "not a url"}, "api_base"),
        ({"api_base": "https://"}, "api_base"),
        ({"api_key": ""}, "api_key"),
        ({"api_key": "short"}, "api_key"),
        ({"api_key": "sk-with space-inside"}, "api_key"),
        ({"name": "  "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"api_version": "2024-10-21"}, "api_version"),
        ({"deployments": {"gpt-4o": "dep"}}, "deployments"),
        ({"priority": "high"}, "priority"),
    ],
)
def test_invalid_openai_credentials_are_refused_with_field_errors(
    brand, providers, fields, bad_field
):
    options = {"provider_code": "openai", "name": "main", "api_key": API_KEY, **fields}

    with pytest.raises(CredentialInvalid) as info:
        credential_create(brand=brand, **options)

    assert info.value.status_code == 400
    assert info.value.error_code == "VALIDATION_ERROR"
    assert bad_field in info.value.field_errors
    assert API_KEY not in str(info.value.as_dict())
    assert not ProviderCredential.objects.exists()


def test_azure_needs_an_endpoint_and_an_api_version(brand, providers):
    with pytest.raises(CredentialInvalid) as info:
        credential_create(brand=brand, provider_code="azure_openai", name="az", api_key=API_KEY)

    assert set(info.value.field_errors) == {"api_base", "api_version"}


def test_azure_deployments_must_map_names_to_names(brand, make_azure_credential):
    with pytest.raises(CredentialInvalid) as info:
        make_azure_credential(brand, deployments={"gpt-4o": ""})

    assert "deployments" in info.value.field_errors


def test_names_are_unique_per_brand_and_provider(brand, other_brand, make_openai_credential):
    make_openai_credential(brand, name="main")

    with pytest.raises(CredentialInvalid) as info:
        make_openai_credential(brand, name="main")
    assert "name" in info.value.field_errors

    assert make_openai_credential(other_brand, name="main").brand == other_brand


def test_update_with_a_new_key_re_encrypts_and_re_dates(openai_credential):
    old_token = openai_credential.encrypted_api_key
    old_set_at = openai_credential.key_set_at

    updated = credential_update(credential=openai_credential, api_key="sk-test-new-key-9876")

    assert updated.encrypted_api_key != old_token
    assert updated.key_last4 == "9876"
    assert updated.key_set_at > old_set_at
    assert updated.rotated_at >= updated.key_set_at
    assert decrypt_api_key(ProviderCredential.objects.get(pk=updated.pk)) == (
        "sk-test-new-key-9876"
    )


def test_update_without_a_key_keeps_the_key(openai_credential):
    updated = credential_update(credential=openai_credential, priority=3, is_active=False)

    assert updated.priority == 3
    assert updated.is_active is False
    assert updated.encrypted_api_key == openai_credential.encrypted_api_key
    assert updated.key_set_at == openai_credential.key_set_at
    assert decrypt_api_key(updated) == API_KEY


def test_update_validates_the_resulting_state(azure_credential):
    with pytest.raises(CredentialInvalid) as info:
        credential_update(credential=azure_credential, api_version="")
    assert "api_version" in info.value.field_errors

    with pytest.raises(CredentialInvalid) as info:
        credential_update(credential=azure_credential, provider="openai")
    assert info.value.field_errors == {"provider": ["This field cannot be changed."]}


def test_update_refuses_a_name_taken_by_another_credential(brand, make_openai_credential):
    make_openai_credential(brand, name="one")
    two = make_openai_credential(brand, name="two")

    with pytest.raises(CredentialInvalid) as info:
        credential_update(credential=two, name="one")

    assert "name" in info.value.field_errors
    assert credential_update(credential=two, name="two").name == "two"


def test_delete_removes_the_credential(openai_credential):
    credential_delete(credential=openai_credential)

    assert not ProviderCredential.objects.filter(pk=openai_credential.pk).exists()


def test_mark_used_writes_at_most_once_a_minute(openai_credential):
    credential_mark_used(credential=openai_credential)
    first = ProviderCredential.objects.get(pk=openai_credential.pk).last_used_at
    assert first is not None

    credential_mark_used(credential=openai_credential)
    assert ProviderCredential.objects.get(pk=openai_credential.pk).last_used_at == first

    stale = timezone.now() - timedelta(minutes=5)
    ProviderCredential.objects.filter(pk=openai_credential.pk).update(last_used_at=stale)
    openai_credential.last_used_at = stale
    credential_mark_used(credential=openai_credential)
    assert ProviderCredential.objects.get(pk=openai_credential.pk).last_used_at > stale


def test_key_age_flags_keys_older_than_90_days(openai_credential):
    assert openai_credential.is_key_expired is False
    openai_credential.key_set_at = timezone.now() - timedelta(days=91)
    assert openai_credential.is_key_expired is True

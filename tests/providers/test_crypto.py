"""Credential encryption at rest: MultiFernet, binding to the row, rotation, start-up check."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.test import override_settings

from ai_providers.crypto import (
    check_encryption_key,
    credential_rotate_encryption,
    decrypt_api_key,
    encrypt_api_key,
    mask_api_key,
)
from ai_providers.errors import CredentialDecryptionError
from ai_providers.models import ProviderCredential

from .conftest import API_KEY

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


def raw_row(credential_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM ai_providers_providercredential WHERE id = %s", [credential_id]
        )
        row = cursor.fetchone()
    assert row is not None
    return " ".join(str(value) for value in row)


def test_encryption_round_trip(openai_credential):
    assert decrypt_api_key(openai_credential) == API_KEY
    assert openai_credential.key_last4 == API_KEY[-4:]


def test_each_encryption_gives_a_different_token():
    first = encrypt_api_key(brand_id=1, credential_id=1, api_key=API_KEY)
    second = encrypt_api_key(brand_id=1, credential_id=1, api_key=API_KEY)
    assert first != second


def test_the_plaintext_is_not_in_the_database_row(openai_credential):
    row = raw_row(openai_credential.pk)

    assert API_KEY not in row
    assert API_KEY[:-4] not in row
    assert openai_credential.encrypted_api_key in row


def test_the_plaintext_is_not_in_repr_or_str(openai_credential):
    for text in (repr(openai_credential), str(openai_credential)):
        assert API_KEY not in text
        assert openai_credential.encrypted_api_key not in text
        assert "sk-...abcd" in text


def test_masked_form_shows_only_the_last_four():
    assert mask_api_key("abcd") == "sk-...abcd"
    assert mask_api_key("") == "sk-...****"


def test_a_ciphertext_copied_to_another_brand_does_not_decrypt(
    brand, other_brand, make_openai_credential
):
    victim = make_openai_credential(brand, api_key="sk-test-brand-A-secret-key")
    attacker = make_openai_credential(other_brand, api_key="sk-test-brand-B-other-key")
    ProviderCredential.objects.filter(pk=attacker.pk).update(
        encrypted_api_key=victim.encrypted_api_key
    )
    attacker.refresh_from_db()

    with pytest.raises(CredentialDecryptionError) as info:
        decrypt_api_key(attacker)

    assert "credential ciphertext does not belong to this credential" in str(info.value)
    assert "sk-test-brand-A-secret-key" not in str(info.value)
    assert info.value.status_code == 500


def test_a_ciphertext_copied_to_another_credential_of_the_same_brand_does_not_decrypt(
    brand, make_openai_credential
):
    first = make_openai_credential(brand, name="first")
    second = make_openai_credential(brand, name="second", api_key="sk-test-second-key-000")
    second.encrypted_api_key = first.encrypted_api_key

    with pytest.raises(CredentialDecryptionError, match="does not belong"):
        decrypt_api_key(second)


def test_a_tampered_ciphertext_does_not_decrypt(openai_credential):
    openai_credential.encrypted_api_key = openai_credential.encrypted_api_key[:-6] + "AAAAAA"

    with pytest.raises(CredentialDecryptionError, match="cannot be decrypted"):
        decrypt_api_key(openai_credential)


def test_key_rotation_keeps_credentials_readable(brand, make_openai_credential):
    with override_settings(AI_ENCRYPTION_KEY=KEY_A):
        credential = make_openai_credential(brand)
    assert credential.rotated_at is not None
    first_rotated_at = credential.rotated_at
    key_set_at = credential.key_set_at

    with override_settings(AI_ENCRYPTION_KEY=f"{KEY_B},{KEY_A}"):
        assert decrypt_api_key(credential) == API_KEY  # old tokens still read
        assert credential_rotate_encryption(credential) is True
        assert credential_rotate_encryption(credential) is False  # idempotent

    with override_settings(AI_ENCRYPTION_KEY=KEY_B):
        credential.refresh_from_db()
        assert decrypt_api_key(credential) == API_KEY
    assert credential.rotated_at > first_rotated_at
    assert credential.key_set_at == key_set_at  # the key itself did not change
    with override_settings(AI_ENCRYPTION_KEY=KEY_A), pytest.raises(CredentialDecryptionError):
        decrypt_api_key(credential)


def test_rotation_refuses_a_ciphertext_of_another_credential(
    brand, other_brand, make_openai_credential
):
    victim = make_openai_credential(brand)
    attacker = make_openai_credential(other_brand)
    ProviderCredential.objects.filter(pk=attacker.pk).update(
        encrypted_api_key=victim.encrypted_api_key
    )

    with pytest.raises(CredentialDecryptionError, match="does not belong"):
        credential_rotate_encryption(attacker)


@pytest.mark.parametrize("value", ["", "   ", ","])
def test_encrypt_and_decrypt_refuse_to_work_without_a_key(openai_credential, value):
    with override_settings(AI_ENCRYPTION_KEY=value):
        with pytest.raises(ImproperlyConfigured, match="AI_ENCRYPTION_KEY is not set"):
            encrypt_api_key(brand_id=1, credential_id=1, api_key=API_KEY)
        with pytest.raises(ImproperlyConfigured, match="AI_ENCRYPTION_KEY is not set"):
            decrypt_api_key(openai_credential)


def test_an_invalid_key_is_refused_without_echoing_it(openai_credential):
    with (
        override_settings(AI_ENCRYPTION_KEY=f"{KEY_A},not-a-fernet-key"),
        pytest.raises(ImproperlyConfigured) as info,
    ):
        decrypt_api_key(openai_credential)

    assert "key #2 of 2 is not a valid Fernet key" in str(info.value)
    assert "not-a-fernet-key" not in str(info.value)
    assert info.value.__cause__ is None


def test_the_key_is_never_derived_from_secret_key(settings, openai_credential):
    settings.SECRET_KEY = "a-completely-different-secret-key-" + "z" * 30
    assert decrypt_api_key(openai_credential) == API_KEY


def test_the_system_check_passes_with_a_valid_key():
    assert check_encryption_key() == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "AI_ENCRYPTION_KEY is not set"),
        ("not-a-fernet-key", "key #1 of 1 is not a valid Fernet key"),
    ],
)
def test_the_system_check_fails_clearly_when_the_key_is_missing_or_invalid(value, message):
    with override_settings(AI_ENCRYPTION_KEY=value):
        errors = check_encryption_key()
        assert [error.id for error in errors] == ["ai_providers.E001"]
        assert message in errors[0].msg
        assert "Fernet.generate_key" in errors[0].hint
        with pytest.raises(SystemCheckError, match="ai_providers.E001"):
            call_command("check")

"""``audit_ai_credentials [--rotate-expired]``: key ages, newest-key status, re-encryption,
and a non-zero exit naming (never revealing) a credential that does not decrypt."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone

from ai_providers.crypto import decrypt_api_key, is_under_newest_key
from ai_providers.models import ProviderCredential

from .conftest import API_KEY

pytestmark = pytest.mark.django_db

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


def audit(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("audit_ai_credentials", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def line_of(output: str, credential: ProviderCredential) -> str:
    return next(line for line in output.splitlines() if line.split()[:1] == [str(credential.pk)])


@pytest.fixture
def credentials_under_key_a(brand, other_brand, make_openai_credential, make_azure_credential):
    with override_settings(AI_ENCRYPTION_KEY=KEY_A):
        return [
            make_openai_credential(brand, name="main"),
            make_azure_credential(brand),
            make_openai_credential(other_brand, name="theirs", api_key="sk-test-other-brand-key9"),
        ]


def test_rotation_through_the_command_then_the_old_key_can_be_dropped(
    credentials_under_key_a,
):
    with override_settings(AI_ENCRYPTION_KEY=f"{KEY_B},{KEY_A}"):
        before, _ = audit()
        assert all(" no " in line_of(before, c) for c in credentials_under_key_a)

        out, _ = audit("--rotate-expired")
        assert "rotated 3  failed 0" in out
        for credential in credentials_under_key_a:
            assert "ROTATED" in line_of(out, credential)
            assert " yes " in line_of(out, credential)

        again, _ = audit("--rotate-expired")
        assert "rotated 0  failed 0" in again  # idempotent

    with override_settings(AI_ENCRYPTION_KEY=KEY_B):
        keys = []
        for credential in ProviderCredential.objects.select_related("provider"):
            assert is_under_newest_key(credential)
            keys.append(decrypt_api_key(credential))
        assert sorted(keys) == sorted([API_KEY, "a" * 32, "sk-test-other-brand-key9"])
        out, _ = audit()
        assert "not under newest key 0" in out
        assert "failed 0" in out


def test_without_rotate_nothing_is_re_encrypted(credentials_under_key_a):
    tokens = list(ProviderCredential.objects.values_list("encrypted_api_key", flat=True))

    with override_settings(AI_ENCRYPTION_KEY=f"{KEY_B},{KEY_A}"):
        out, _ = audit()

    assert "not under newest key 3  rotated 0" in out
    assert list(ProviderCredential.objects.values_list("encrypted_api_key", flat=True)) == tokens


def test_the_table_shows_masked_keys_ages_and_flags_keys_older_than_90_days(
    brand, make_openai_credential
):
    fresh = make_openai_credential(brand, name="fresh")
    old = make_openai_credential(brand, name="old", api_key="sk-test-an-old-key-zz99")
    ProviderCredential.objects.filter(pk=old.pk).update(
        key_set_at=timezone.now() - timedelta(days=120)
    )

    out, _ = audit()

    assert "acme" in line_of(out, fresh)
    assert "sk-...abcd" in line_of(out, fresh)
    assert "EXPIRED" not in line_of(out, fresh)
    old_line = line_of(out, old)
    assert "sk-...zz99" in old_line
    assert " 120 " in old_line
    assert "EXPIRED" in old_line
    assert "expired 1" in out
    assert API_KEY not in out
    assert "sk-test-an-old-key-zz99" not in out


def test_a_credential_that_does_not_decrypt_fails_the_command_without_revealing_a_key(
    brand, other_brand, make_openai_credential
):
    victim = make_openai_credential(brand, name="victim")
    copied = make_openai_credential(other_brand, name="copied", api_key="sk-test-copied-key-0000")
    ProviderCredential.objects.filter(pk=copied.pk).update(
        encrypted_api_key=victim.encrypted_api_key
    )
    out, err = StringIO(), StringIO()

    with pytest.raises(CommandError) as info:
        call_command("audit_ai_credentials", "--rotate-expired", stdout=out, stderr=err)

    everything = out.getvalue() + err.getvalue() + str(info.value)
    assert f"credential(s) cannot be decrypted with AI_ENCRYPTION_KEY: {copied.pk}" in str(
        info.value
    )
    assert f"credential {copied.pk} (globex/openai/copied)" in err.getvalue()
    assert "DECRYPT_FAILED" in line_of(out.getvalue(), copied)
    assert "DECRYPT_FAILED" not in line_of(out.getvalue(), victim)
    for secret in (API_KEY, "sk-test-copied-key-0000", victim.encrypted_api_key):
        assert secret not in everything


def test_the_command_exits_non_zero_from_the_shell_when_the_key_is_missing(tmp_path):
    completed = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", "audit_ai_credentials"],
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "megahub.settings",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'audit.sqlite3'}",
            "AI_ENCRYPTION_KEY": "",
            "SECRET_KEY": "x" * 60,
            "JWT_SIGNING_KEY": "y" * 60,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=str(django_settings.BASE_DIR),
    )

    assert completed.returncode != 0
    assert "AI_ENCRYPTION_KEY" in completed.stderr


def test_webhook_secrets_rotate_with_the_credentials(brand, other_brand):
    from ai_providers.budget_models import BrandQuota
    from ai_providers.budgets import brand_quota_update
    from ai_providers.crypto import decrypt_webhook_secret

    with override_settings(AI_ENCRYPTION_KEY=KEY_A):
        brand_quota_update(
            brand=brand,
            job_webhook_url="https://hooks.example/a",
            webhook_secret="whsec-brand-one-0123456789",
        )
    with override_settings(AI_ENCRYPTION_KEY=f"{KEY_B},{KEY_A}"):
        out, _ = audit()
        assert "webhook secrets 1  not under newest key 1  rotated 0  failed 0" in out
        out, _ = audit("--rotate-expired")
        assert "webhook secrets 1  not under newest key 1  rotated 1  failed 0" in out
    with override_settings(AI_ENCRYPTION_KEY=KEY_B):
        token = BrandQuota.objects.get(brand=brand).webhook_secret_encrypted
        assert decrypt_webhook_secret(brand_id=brand.pk, token=token) == (
            "whsec-brand-one-0123456789"
        )
        # Copied into another brand's row, the token is refused, and the command says so.
        BrandQuota.objects.create(brand=other_brand, webhook_secret_encrypted=token)
        with pytest.raises(
            CommandError, match=rf"webhook secret of brand\(s\) {other_brand.slug} "
        ):
            audit()

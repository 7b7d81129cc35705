"""The admin sets keys through the services and never shows them."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from ai_providers.crypto import decrypt_api_key
from ai_providers.models import Provider, ProviderCredential

from .conftest import API_KEY


@pytest.fixture
def admin_site_client(client, db):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-12345678")
    client.force_login(user)
    return client


def test_admin_creates_an_encrypted_credential_and_never_shows_the_key(
    admin_site_client, brand, providers, fake_openai
):
    openai = Provider.objects.get(code="openai")
    response = admin_site_client.post(
        "/admin/ai_providers/providercredential/add/",
        {
            "brand": brand.pk,
            "provider": openai.pk,
            "name": "from-admin",
            "api_key": API_KEY,
            "api_base": fake_openai.base_url,
            "api_version": "",
            "deployments": "{}",
            "is_active": "on",
            "priority": "0",
        },
        secure=True,
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    credential = ProviderCredential.objects.get(name="from-admin")
    assert decrypt_api_key(credential) == API_KEY

    for url in (
        "/admin/ai_providers/providercredential/",
        f"/admin/ai_providers/providercredential/{credential.pk}/change/",
    ):
        page = admin_site_client.get(url, secure=True)
        assert page.status_code == 200
        html = page.content.decode()
        assert API_KEY not in html
        assert credential.encrypted_api_key not in html
        assert "sk-...abcd" in html


def test_admin_shows_service_validation_errors_on_the_form(admin_site_client, brand, providers):
    azure = Provider.objects.get(code="azure_openai")
    response = admin_site_client.post(
        "/admin/ai_providers/providercredential/add/",
        {
            "brand": brand.pk,
            "provider": azure.pk,
            "name": "az",
            "api_key": API_KEY,
            "api_base": "",
            "api_version": "",
            "deployments": "{}",
            "priority": "0",
        },
        secure=True,
    )

    assert response.status_code == 200
    assert "Azure OpenAI needs an api_version" in response.content.decode()
    assert not ProviderCredential.objects.exists()

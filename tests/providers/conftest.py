from __future__ import annotations

from collections.abc import Callable

import pytest

from ai_core.fake_openai.server import FakeOpenAIServer
from ai_core.models import Brand
from ai_providers.clients import client_cache_invalidate
from ai_providers.models import ProviderCredential
from ai_providers.services import credential_create, providers_seed

# The real key of the tests: asserted absent from rows, reprs, errors and logs.
API_KEY = "sk-test-PLAINTEXTsecret0123456789abcd"
AZURE_DEPLOYMENTS = {"gpt-4o": "gpt4o-prod", "o3": "o3-reasoning"}
AZURE_API_VERSION = "2024-10-21"


@pytest.fixture(autouse=True)
def _fresh_client_cache():
    client_cache_invalidate()
    yield
    client_cache_invalidate()


@pytest.fixture
def providers(db) -> None:
    providers_seed()


@pytest.fixture
def make_openai_credential(
    providers, fake_openai: FakeOpenAIServer
) -> Callable[..., ProviderCredential]:
    def make(brand: Brand, **fields: object) -> ProviderCredential:
        options: dict = {
            "provider_code": "openai",
            "name": "main",
            "api_key": API_KEY,
            "api_base": fake_openai.base_url,
            **fields,
        }
        return credential_create(brand=brand, **options)

    return make


@pytest.fixture
def make_azure_credential(
    providers, fake_openai: FakeOpenAIServer
) -> Callable[..., ProviderCredential]:
    def make(brand: Brand, **fields: object) -> ProviderCredential:
        options: dict = {
            "provider_code": "azure_openai",
            "name": "azure",
            "api_key": "a" * 32,
            "api_base": fake_openai.root_url,
            "api_version": AZURE_API_VERSION,
            "deployments": dict(AZURE_DEPLOYMENTS),
            **fields,
        }
        return credential_create(brand=brand, **options)

    return make


@pytest.fixture
def openai_credential(brand, make_openai_credential) -> ProviderCredential:
    return make_openai_credential(brand)


@pytest.fixture
def azure_credential(brand, make_azure_credential) -> ProviderCredential:
    return make_azure_credential(brand)

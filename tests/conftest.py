from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from ai_core.fake_openai.server import FakeOpenAIServer
from ai_core.models import Brand, BrandMembership
from ai_providers.circuit import circuit_reset
from ai_providers.clients import client_cache_invalidate
from ai_providers.models import ProviderCredential
from ai_providers.services import credential_create, providers_seed

from .factories import make_brand, make_member

pytest_plugins = ["ai_core.fake_openai.pytest_plugin"]


@pytest.fixture(scope="session")
def fake_openai_server():
    """The bundled fake server, counting prompt tokens with the exact o200k tokenizer (as
    the real API does for these models), so estimates and billed usage can be compared."""
    from ai_openai.tokens import count_text_tokens

    # Built now, not by the first request that counts (about half a second): a test with
    # a short provider timeout would otherwise time out on whichever request comes first.
    count_text_tokens("warm up", "o200k_base")
    server = FakeOpenAIServer(token_counter=lambda text: count_text_tokens(text, "o200k_base"))
    server.start()
    yield server
    server.stop()


IN_CI = os.environ.get("CI") == "true"


@pytest.fixture
def brand(db) -> Brand:
    return make_brand("acme", name="Acme")


@pytest.fixture
def other_brand(db) -> Brand:
    return make_brand("globex", name="Globex")


@pytest.fixture
def admin_user(brand):
    return make_member(brand, role=BrandMembership.Role.ADMIN)


@pytest.fixture
def member_user(brand):
    return make_member(brand, role=BrandMembership.Role.MEMBER)


@pytest.fixture
def other_admin(other_brand):
    return make_member(other_brand, role=BrandMembership.Role.ADMIN)


@pytest.fixture
def client_for() -> Callable[..., APIClient]:
    """An API client authenticated as ``user`` (JWT), optionally selecting ``brand``."""

    def build(user, brand: Brand | str | None = None) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
        if brand is not None:
            ref = brand.slug if isinstance(brand, Brand) else brand
            client.credentials(
                HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}", HTTP_X_BRAND_ID=ref
            )
        return client

    return build


@pytest.fixture
def api_client(client_for, admin_user, brand) -> APIClient:
    """The admin of ``brand``, with ``X-Brand-ID: acme``."""
    return client_for(admin_user, brand)


@pytest.fixture
def member_client(client_for, member_user, brand) -> APIClient:
    return client_for(member_user, brand)


@pytest.fixture
def other_client(client_for, other_admin, other_brand) -> APIClient:
    """The admin of ``other_brand``: used to prove cross-brand isolation."""
    return client_for(other_admin, other_brand)


# The real key of the tests: asserted absent from rows, reprs, errors and logs.
API_KEY = "sk-test-PLAINTEXTsecret0123456789abcd"
AZURE_DEPLOYMENTS = {"gpt-4o": "gpt4o-prod", "o3": "o3-reasoning"}
AZURE_API_VERSION = "2024-10-21"


@pytest.fixture(autouse=True)
def _fresh_client_cache():
    client_cache_invalidate()
    yield
    client_cache_invalidate()
    circuit_reset()


@pytest.fixture(autouse=True)
def _notifications_finished():
    """Alerts and job webhooks are sent from background threads that read the database:
    a test ends once they have, so none still reads while the database is flushed for the
    next test (on SQLite's shared in-memory database that fails the flush)."""
    import threading

    from ai_providers.alerts import NOTIFY_THREAD_PREFIX

    yield
    for thread in threading.enumerate():
        if thread.name.startswith(NOTIFY_THREAD_PREFIX):
            thread.join(timeout=15)


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


@pytest.fixture
def ai_ready(db):
    """Providers, the model registry (with o3) and job types, as setup_ai_infrastructure."""
    from ai_openai.setup import ai_infrastructure_setup

    ai_infrastructure_setup(include_o3=True)


@pytest.fixture
def chat_ready(ai_ready, openai_credential):
    """``brand`` can chat: infrastructure plus an OpenAI credential on the fake server."""
    return openai_credential


@pytest.fixture
def celery_runner(settings):
    """Jobs go to a real broker (Redis) with its queues emptied; needs PostgreSQL + Redis."""
    import redis

    from ai_core import runner
    from ai_core.runner import WORKER_QUEUES

    from .workers import require_postgres_and_redis

    require_postgres_and_redis()
    settings.AI_JOB_RUNNER = "celery"
    broker = redis.Redis.from_url(settings.REDIS_URL)
    broker.delete(*WORKER_QUEUES, "unacked", "unacked_index")
    runner._broker_down_until = 0.0
    yield settings.REDIS_URL
    broker.delete(*WORKER_QUEUES, "unacked", "unacked_index")


def hold_first_batch(monkeypatch, group) -> list[int]:
    """Hold the first batch a group commit writes for a moment, so what is submitted
    meanwhile queues behind it (what happens under load); the batch sizes, as written."""
    import time

    sizes: list[int] = []
    write = group._write

    def held(units):
        sizes.append(len(units))
        if len(sizes) == 1:
            time.sleep(0.5)
        write(units)

    monkeypatch.setattr(group, "_write", held)
    return sizes


@pytest.fixture
def slow_first_batch(monkeypatch):
    """The completions' first batch held (``hold_first_batch``): its batch sizes."""
    from ai_core.services import jobs

    return hold_first_batch(monkeypatch, jobs._completions)

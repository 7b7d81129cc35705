"""The hot path's process-local reference caches (megahub/refcache.py): with them on, a
repeated gateway request reads no reference row; a change made through the ORM applies at
once; a change the process is not told about (another process's QuerySet.update())
applies within AI_REFERENCE_CACHE_SECONDS."""

import re
import time
import urllib.request

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from ai_core.models import AIJobType
from ai_openai.models import AIModel, BrandApiKey
from ai_providers.budget_models import BrandQuota
from ai_providers.models import Provider, ProviderCredential
from megahub.refcache import refcache_clear, refcache_touch
from tests.workers import api_server, parallel_posts, require_postgres_and_redis

pytestmark = pytest.mark.django_db

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Bonjour"}], "max_tokens": 8}
REFERENCE_TABLES = {
    model._meta.db_table
    for model in (BrandApiKey, AIModel, ProviderCredential, Provider, BrandQuota, AIJobType)
}


@pytest.fixture
def cached(settings):
    settings.AI_REFERENCE_CACHE_SECONDS = 60
    yield
    refcache_clear()


@pytest.fixture
def key(api_client, chat_ready):
    response = api_client.post("/ai/api-keys/", {"name": "cache"}, format="json")
    assert response.status_code == 201
    return response.json()


@pytest.fixture
def gateway(key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key['key']}")
    return client


def chat(gateway: APIClient):
    return gateway.post("/ai/v1/chat/completions", BODY, format="json")


def tables_read(queries: list[dict]) -> set[str]:
    read = set()
    for query in queries:
        sql = query["sql"]
        if sql.lstrip().upper().startswith("SELECT"):
            read.update(re.findall(r'FROM "([a-z0-9_]+)"', sql))
            read.update(re.findall(r'JOIN "([a-z0-9_]+)"', sql))
    return read


def test_a_repeated_request_reads_no_reference_row(cached, gateway, fake_openai):
    assert chat(gateway).status_code == 200
    with CaptureQueriesContext(connection) as ctx:
        assert chat(gateway).status_code == 200
    assert tables_read(ctx.captured_queries) & REFERENCE_TABLES == set()


def test_without_the_cache_every_request_reads_them(settings, gateway, fake_openai):
    settings.AI_REFERENCE_CACHE_SECONDS = 0
    assert chat(gateway).status_code == 200
    with CaptureQueriesContext(connection) as ctx:
        assert chat(gateway).status_code == 200
    read = tables_read(ctx.captured_queries)
    assert {BrandApiKey._meta.db_table, ProviderCredential._meta.db_table} <= read


def test_revoking_a_key_applies_at_once(cached, api_client, key, gateway, fake_openai):
    assert chat(gateway).status_code == 200
    assert api_client.delete(f"/ai/api-keys/{key['id']}/").status_code == 204
    response = chat(gateway)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_deactivating_a_credential_applies_at_once(cached, gateway, chat_ready, fake_openai):
    assert chat(gateway).status_code == 200
    chat_ready.is_active = False
    chat_ready.save()
    response = chat(gateway)
    assert response.status_code == 424
    assert len(fake_openai.requests()) == 1


def test_a_quota_change_applies_at_once(cached, api_client, gateway, fake_openai):
    assert chat(gateway).status_code == 200
    response = api_client.patch("/ai/quotas/", {"monthly_token_quota": 1}, format="json")
    assert response.status_code == 200, response.content
    response = chat(gateway)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "monthly_quota_exceeded"


def test_another_process_change_applies_within_the_ttl(settings, gateway, key, fake_openai):
    settings.AI_REFERENCE_CACHE_SECONDS = 0.5
    assert chat(gateway).status_code == 200
    # What another process does: no signal reaches this one.
    BrandApiKey.objects.filter(pk=key["id"]).update(revoked_at="2026-01-01T00:00:00Z")
    assert chat(gateway).status_code == 200  # still cached here
    time.sleep(0.6)
    assert chat(gateway).status_code == 401
    refcache_clear()


def test_another_process_change_on_this_machine_applies_at_once(cached, gateway, key, fake_openai):
    """What another process does when its change commits: replace the stamp file."""
    assert chat(gateway).status_code == 200
    BrandApiKey.objects.filter(pk=key["id"]).update(revoked_at="2026-01-01T00:00:00Z")
    assert chat(gateway).status_code == 200  # no signal, no stamp: still cached here
    refcache_touch()
    assert chat(gateway).status_code == 401


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("stamp", [None, "off"])
def test_a_key_revoked_in_one_process_is_refused_by_another_at_once(
    api_client, key, fake_openai, admin_user, stamp
):
    """Two API processes on this machine (two gunicorn servers, so each request's process
    is known), both with a 60 s cache and the key cached: revoked through one, the key is
    refused by the other at its next request. With the stamp file turned off
    (``AI_REFERENCE_CACHE_STAMP=off``) the other one still serves it from its cache."""
    require_postgres_and_redis()
    token = str(AccessToken.for_user(admin_user))
    env = {"AI_REFERENCE_CACHE_SECONDS": "60"}
    if stamp is not None:
        env["AI_REFERENCE_CACHE_STAMP"] = stamp
    with (
        api_server(workers=1, extra_env=env) as first,
        api_server(workers=1, extra_env=env) as second,
    ):
        for server in (first, second):
            warm = parallel_posts(
                f"{server.url}/ai/v1/chat/completions", key["key"], "-", [BODY] * 4, 2
            )
            assert [status for status, _ in warm] == [200] * 4
        revoke = urllib.request.Request(
            f"{first.url}/ai/api-keys/{key['id']}/",
            headers={"Authorization": f"Bearer {token}", "X-Brand-ID": "acme"},
            method="DELETE",
        )
        with urllib.request.urlopen(revoke, timeout=10) as response:
            assert response.status == 204
        after = parallel_posts(
            f"{second.url}/ai/v1/chat/completions", key["key"], "-", [BODY] * 4, 2
        )
    assert [status for status, _ in after] == ([401] * 4 if stamp is None else [200] * 4)
    assert BrandApiKey.objects.get(pk=key["id"]).revoked_at is not None


def test_a_gateway_request_costs_twelve_statements_and_no_read(cached, gateway, fake_openai):
    """The budget of docs/performance.md: once warm, a non-streamed gateway request writes
    the job and its reservation, then the completion with its attempt — and reads nothing."""
    assert chat(gateway).status_code == 200
    with CaptureQueriesContext(connection) as ctx:
        assert chat(gateway).status_code == 200
    control = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK")
    statements = [
        q["sql"] for q in ctx.captured_queries if not q["sql"].lstrip().upper().startswith(control)
    ]
    verbs = [sql.split()[0].upper() for sql in statements]
    assert "SELECT" not in verbs, statements
    # job + reservation + 2 counters; then job, attempt, OpenAI job, usage, reservation,
    # 2 counters, rollup.
    assert len(statements) == 12, statements

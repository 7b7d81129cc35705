"""SPEC §5: GET /ai/api-keys/ is a paginated list (count, next, previous, results) of the
current brand's keys only, each shown by its prefix, never the key."""

import pytest

from ai_openai.gateway import api_key_create
from ai_openai.gateway_apis import ApiKeySerializer

pytestmark = pytest.mark.django_db

ENVELOPE = {"count", "next", "previous", "results"}


@pytest.fixture
def keys(brand, other_brand):
    ours = [api_key_create(brand=brand, name=f"key-{i}") for i in range(3)]
    theirs = api_key_create(brand=other_brand, name="theirs")
    return ours, theirs


def test_api_key_list_is_the_paginated_envelope(api_client, keys):
    ours, _ = keys
    body = api_client.get("/ai/api-keys/").json()
    assert set(body) == ENVELOPE
    assert body["count"] == 3
    assert body["next"] is None
    assert body["previous"] is None
    assert all(set(row) == set(ApiKeySerializer.Meta.fields) for row in body["results"])
    assert {row["prefix"] for row in body["results"]} == {row.prefix for row, _ in ours}
    assert not any(key in str(body) for _, key in ours)


def test_another_brands_keys_are_not_listed(api_client, other_client, keys):
    ours, (their_row, _) = keys
    listed = api_client.get("/ai/api-keys/?page_size=500").json()["results"]
    assert their_row.pk not in {row["id"] for row in listed}
    assert their_row.prefix not in {row["prefix"] for row in listed}
    theirs = other_client.get("/ai/api-keys/").json()
    assert theirs["count"] == 1
    assert [row["id"] for row in theirs["results"]] == [their_row.pk]


def test_api_key_pages_are_newest_first_without_repeats(api_client, keys):
    ours, _ = keys
    ids, url = [], "/ai/api-keys/?page_size=2"
    while url:
        body = api_client.get(url).json()
        assert body["count"] == 3
        ids.extend(row["id"] for row in body["results"])
        url = body["next"]
    assert ids == [row.pk for row, _ in reversed(ours)]


def test_one_key_is_read_by_its_id_within_the_brand(api_client, keys, ai_ready):
    (row, key), *_ = keys[0]
    _, (theirs, _) = keys
    shown = api_client.get(f"/ai/api-keys/{row.pk}/")
    assert shown.status_code == 200, shown.content
    assert shown.json()["prefix"] == row.prefix
    assert key not in shown.content.decode()
    for other in (theirs.pk, "abc", "99999"):
        response = api_client.get(f"/ai/api-keys/{other}/")
        assert response.status_code == 404, other
        assert response.json()["error_code"] == "NOT_FOUND"


def test_allowed_models_must_be_models_of_the_registry(api_client, ai_ready):
    refused = api_client.post(
        "/ai/api-keys/", {"name": "typo", "allowed_models": ["gpt-4o", "gpt4o"]}, format="json"
    )
    assert refused.status_code == 400
    assert "gpt4o" in refused.json()["field_errors"]["allowed_models"][0]
    created = api_client.post(
        "/ai/api-keys/", {"name": "ok", "allowed_models": ["gpt-4o"]}, format="json"
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["key"].startswith("mh-")
    assert body["created_at"]
    patched = api_client.patch(
        f"/ai/api-keys/{body['id']}/", {"allowed_models": ["nope"]}, format="json"
    )
    assert patched.status_code == 400


@pytest.mark.parametrize("zero", ["-0.0", -0.0, "-0"])
def test_a_negative_zero_budget_is_zero(api_client, chat_ready, zero):
    created = api_client.post(
        "/ai/api-keys/", {"name": "z", "monthly_budget": zero}, format="json"
    ).json()
    assert created["monthly_budget"] == "0.000000"
    patched = api_client.patch(
        f"/ai/api-keys/{created['id']}/", {"monthly_budget": zero}, format="json"
    ).json()
    assert patched["monthly_budget"] == "0.000000"
    quota = api_client.patch("/ai/quotas/", {"daily_budget": zero}, format="json")
    assert quota.status_code == 200, quota.content
    assert '"-0.' not in quota.content.decode()

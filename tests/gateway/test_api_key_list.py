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

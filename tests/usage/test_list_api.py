"""SPEC §5 GET /ai/usage/: the brand's usage rows, every filter, search and ordering."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.core.test_auth import assert_error

from .conftest import at_day

pytestmark = pytest.mark.django_db


def all_rows(client, query: str = "") -> list[dict]:
    rows, url = [], f"/ai/usage/?page_size=500&{query}"
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        rows.extend(body["results"])
        url = body["next"]
    return rows


def test_list_shows_the_brands_rows_newest_first(api_client, usage_data, noise):
    body = api_client.get("/ai/usage/").json()
    assert body["count"] == len(usage_data.specs)
    assert {"count", "next", "previous", "results"} <= set(body)
    rows = all_rows(api_client)
    assert {r["job_id"] for r in rows} == {s.job_id for s in usage_data.specs}
    stamps = [r["created_at"] for r in rows]
    assert stamps == sorted(stamps, reverse=True)


def test_list_row_carries_the_recorded_figures(api_client, usage_data):
    spec = usage_data.specs[0]  # scored (and re-scored)
    row = next(r for r in all_rows(api_client) if r["job_id"] == spec.job_id)
    assert row["model_name"] == spec.model_name
    assert row["provider"] == spec.provider
    assert row["generation"] == spec.generation
    assert row["job_type"] == spec.job_type
    assert row["prompt_tokens"] == spec.prompt_tokens
    assert row["total_tokens"] == spec.total_tokens
    assert row["total_cost"] == f"{spec.total_cost:.6f}"
    assert Decimal(row["execution_time_seconds"]) == spec.execution_time_seconds
    assert Decimal(row["quality_score"]) == spec.quality_score


def expect(specs, predicate) -> set[str]:
    return {s.job_id for s in specs if predicate(s)}


@pytest.mark.parametrize(
    ("query", "predicate"),
    [
        ("model_name=o3", lambda s: s.model_name == "o3"),
        ("model_name__in=o3,gpt-4o", lambda s: s.model_name in ("o3", "gpt-4o")),
        ("generation=legacy", lambda s: s.generation == "legacy"),
        ("provider=azure_openai", lambda s: s.provider == "azure_openai"),
        ("job_type=summarization", lambda s: s.job_type == "summarization"),
        ("total_cost__gte=0.05", lambda s: s.total_cost >= Decimal("0.05")),
        ("total_cost__lte=0.01", lambda s: s.total_cost <= Decimal("0.01")),
        (
            "quality_score__gte=5",
            lambda s: s.quality_score is not None and s.quality_score >= 5,
        ),
        ("is_cached=true", lambda s: s.is_cached),
        ("is_cached=False", lambda s: not s.is_cached),
        ("is_cached=0", lambda s: not s.is_cached),
        ("search=turbo", lambda s: "turbo" in s.model_name),
        (
            "model_name=o3-mini&quality_score__gte=2",
            lambda s: s.model_name == "o3-mini" and (s.quality_score or -1) >= 2,
        ),
    ],
)
def test_filters(api_client, usage_data, noise, query, predicate):
    got = {r["job_id"] for r in all_rows(api_client, query)}
    assert got == expect(usage_data.specs, predicate)
    assert got  # the fixture has rows for every filter


def test_cost_efficiency_filter(api_client, usage_data, noise):
    threshold = Decimal("500")
    got = {r["job_id"] for r in all_rows(api_client, f"cost_efficiency__gte={threshold}")}

    def efficient(s) -> bool:
        if s.quality_score is None or not s.total_cost:
            return False
        return (s.quality_score / s.total_cost).quantize(Decimal("0.0001")) >= threshold

    assert got == expect(usage_data.specs, efficient)


def test_date_filters(api_client, usage_data, noise):
    since = at_day(10)
    until = at_day(3)
    query = (
        f"created_at__gte={since.isoformat().replace('+00:00', 'Z')}"
        f"&created_at__lte={until.isoformat().replace('+00:00', 'Z')}"
    )
    got = {r["job_id"] for r in all_rows(api_client, query)}
    assert got == expect(usage_data.specs, lambda s: since <= s.created_at <= until)


def test_search_by_job_id(api_client, usage_data, noise):
    spec = usage_data.specs[5]
    assert [r["job_id"] for r in all_rows(api_client, f"search={spec.job_id}")] == [spec.job_id]
    foreign = noise.specs[0].job_id
    assert all_rows(api_client, f"search={foreign}") == []


@pytest.mark.parametrize(
    "field", ["total_cost", "-total_cost", "quality_score", "-execution_time_seconds", "model_name"]
)
def test_ordering_never_reveals_other_brands_rows(api_client, usage_data, noise, field):
    rows = all_rows(api_client, f"ordering={field}")
    assert {r["job_id"] for r in rows} == {s.job_id for s in usage_data.specs}
    key = field.lstrip("-")
    values = [r[key] for r in rows if r[key] is not None]
    cast = Decimal if key != "model_name" else str
    assert [cast(v) for v in values] == sorted(
        (cast(v) for v in values), reverse=field.startswith("-")
    )


def test_other_brand_lists_only_its_rows(other_client, usage_data, noise):
    assert {r["job_id"] for r in all_rows(other_client)} == {s.job_id for s in noise.specs}


@pytest.mark.parametrize(
    "query",
    [
        "total_cost__gte=abc",
        "created_at__gte=yesterday",
        "quality_score__gte=x",
        "ordering=-cost",
        "ordering=created_at,brand__name",
        "created_at__gte=0001-01-01T00:00:00%2B01:00",
        "created_at__lte=9999-12-31T23:59:59-01:00",
        "is_cached=maybe",
    ],
)
def test_bad_filter_values_are_400(api_client, usage_data, query):
    assert_error(api_client.get(f"/ai/usage/?{query}"), 400, "VALIDATION_ERROR")


def test_member_can_read_usage(member_client, usage_data):
    assert member_client.get("/ai/usage/").json()["count"] == len(usage_data.specs)


def test_job_filter_reaches_usage_through_the_reverse_relation(usage_data):
    # ai_core's jobs filter usage__execution_time_seconds__gte relies on related_name="usage".
    from ai_core.models import AIJob

    threshold = Decimal("30")
    jobs = AIJob.objects.filter(
        brand=usage_data.brand, usage__execution_time_seconds__gte=threshold
    )
    assert set(jobs.values_list("public_id", flat=True)) == expect(
        usage_data.specs, lambda s: s.execution_time_seconds >= threshold
    )


@pytest.mark.parametrize("field", ["quality_score", "-cost_efficiency", "model_name"])
def test_pages_of_a_tied_ordering_neither_repeat_nor_skip_rows(api_client, usage_data, field):
    # Most rows tie (null scores, shared model names): the job id breaks the ties.
    ids, url = [], f"/ai/usage/?page_size=7&ordering={field}"
    while url:
        body = api_client.get(url).json()
        ids.extend(r["job_id"] for r in body["results"])
        url = body["next"]
    assert len(ids) == len(set(ids)) == len(usage_data.specs)

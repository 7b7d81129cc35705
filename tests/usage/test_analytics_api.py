"""SPEC §5 ai_usage analytics: every figure equals a plain Python computation over the
fixture rows, and another brand's rows change nothing."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from tests.core.test_auth import assert_error

from . import expected
from .conftest import build_dataset, record_usage, today_utc

pytestmark = pytest.mark.django_db


def without_period(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "period"}


@pytest.mark.parametrize("days", [1, 7, 30, 366])
def test_dashboard_figures_equal_the_rows(api_client, usage_data, noise, days):
    response = api_client.get(f"/ai/usage/dashboard/?days={days}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert without_period(body) == expected.dashboard(usage_data.specs, days)
    assert body["period"]["days"] == days
    first = today_utc() - timedelta(days=days - 1)
    assert body["period"]["since"] == f"{first.isoformat()}T00:00:00+00:00"


def test_dashboard_defaults_to_seven_days_and_has_the_seed_shape(api_client, usage_data):
    body = api_client.get("/ai/usage/dashboard/").json()
    assert body["period"]["days"] == 7
    assert set(body) == {"period", "totals", "by_generation", "by_model", "efficiency_insights"}
    assert {"jobs", "cost", "avg_cost_per_job", "tokens"} <= set(body["totals"])
    for entry in body["by_generation"]:
        assert {"generation", "models", "jobs", "cost", "percentage", "avg_quality"} <= set(entry)
    assert set(body["efficiency_insights"]) == {
        "most_cost_effective",
        "highest_roi",
        "premium_choice",
        "fastest",
    }
    # Money is a 6-decimal string.
    assert len(body["totals"]["cost"].split(".")[1]) == 6


def test_dashboard_of_a_brand_without_usage_is_zero_and_null_not_invented(api_client, noise):
    body = api_client.get("/ai/usage/dashboard/?days=30").json()
    assert body["totals"] == {
        "jobs": 0,
        "cost": "0.000000",
        "avg_cost_per_job": None,
        "tokens": 0,
        "cached_jobs": 0,
        "scored_jobs": 0,
        "avg_quality": None,
    }
    assert body["by_generation"] == body["by_model"] == []
    assert body["efficiency_insights"] == dict.fromkeys(
        ["most_cost_effective", "highest_roi", "premium_choice", "fastest"]
    )


def test_other_brand_sees_only_its_own_figures(other_client, usage_data, noise):
    body = other_client.get("/ai/usage/dashboard/?days=60").json()
    assert without_period(body) == expected.dashboard(noise.specs, 60)


def test_unscored_data_gives_null_quality_insights(api_client, brand, job_types):
    record_usage(brand, model_name="o3", generation="new", total_cost=Decimal("0.02"))
    record_usage(brand, model_name="gpt-4o", total_cost=Decimal("0.01"))
    insights = api_client.get("/ai/usage/dashboard/").json()["efficiency_insights"]
    assert insights["highest_roi"] is None
    assert insights["premium_choice"] is None
    assert insights["most_cost_effective"] == "gpt-4o"


def comparison_expected(specs, days, models=None):
    rows = expected.in_period(specs, days)
    if models is not None:
        rows = [s for s in rows if s.model_name in models]
    figures = {}
    for (name, _gen), model_rows in expected.group(
        rows, lambda s: (s.model_name, s.generation)
    ).items():
        f = expected.model_figures(model_rows)
        f["execution_time_p50"] = expected.histogram_percentile(model_rows, 0.5)
        f["execution_time_p95"] = expected.histogram_percentile(model_rows, 0.95)
        figures[name] = f
    generations = {}
    for generation in ("new", "legacy"):
        gen_rows = [s for s in rows if s.generation == generation]
        if not gen_rows:
            generations[f"{generation}_models"] = {
                "models": [],
                "jobs": 0,
                "avg_quality": None,
                "avg_cost": None,
                "avg_execution_time": None,
                "use_cases": [],
            }
            continue
        by_type = expected.group(gen_rows, lambda s: s.job_type)
        generations[f"{generation}_models"] = {
            "models": sorted({s.model_name for s in gen_rows}),
            "jobs": len(gen_rows),
            "avg_quality": expected.avg_quality(gen_rows),
            "avg_cost": expected.money(expected.cost(gen_rows) / len(gen_rows)),
            "avg_execution_time": expected.num(
                sum((s.execution_time_seconds for s in gen_rows), Decimal(0)), len(gen_rows), 3
            ),
            "use_cases": [
                code for code, _ in sorted(by_type.items(), key=lambda kv: (-len(kv[1]), kv[0]))
            ][:3],
        }
    return figures, generations


@pytest.mark.parametrize(
    ("query", "models", "days"),
    [
        ("models=o3,o3-mini,gpt-4o&days=30", ["o3", "o3-mini", "gpt-4o"], 30),
        ("days=7", None, 7),
        ("models=gpt-4-turbo&days=366", ["gpt-4-turbo"], 366),
    ],
)
def test_model_comparison_equals_the_rows(api_client, usage_data, noise, query, models, days):
    response = api_client.get(f"/ai/usage/model_comparison/?{query}")
    assert response.status_code == 200, response.content
    body = response.json()
    figures, generations = comparison_expected(usage_data.specs, days, models)
    assert {m["model_name"]: m for m in body["models"]} == figures
    assert body["generation_comparison"] == generations
    assert body["models_requested"] == models
    assert set(body["recommendations"]) == {
        "cost_optimization",
        "quality_premium",
        "balanced_approach",
        "default_choice",
    }


def test_model_comparison_recommendations_follow_the_data(api_client, usage_data):
    body = api_client.get("/ai/usage/model_comparison/?days=60").json()
    figures, _ = comparison_expected(usage_data.specs, 60)
    stats = list(figures.values())
    details = body["recommendation_details"]
    assert details["cost_optimization"]["model"] == expected.best(
        stats, "cost_per_quality_point", highest=False
    )
    assert details["quality_premium"]["model"] == expected.best(stats, "avg_quality", highest=True)
    most_used = min(stats, key=lambda f: (-f["jobs"], f["model_name"]))["model_name"]
    assert details["default_choice"]["model"] == most_used
    assert body["recommendations"]["default_choice"] == details["default_choice"]["text"]
    assert details["balanced_approach"]["model"] in figures


def test_model_comparison_of_unused_models_is_empty_not_invented(api_client, usage_data):
    body = api_client.get("/ai/usage/model_comparison/?models=o4-mini,nope").json()
    assert body["models"] == []
    assert body["generation_comparison"]["new_models"]["avg_quality"] is None
    assert body["generation_comparison"]["new_models"]["jobs"] == 0
    assert body["recommendations"] == dict.fromkeys(
        ["cost_optimization", "quality_premium", "balanced_approach", "default_choice"]
    )


def test_percentile_estimate_lies_in_the_bucket_of_the_exact_one(api_client, usage_data):
    body = api_client.get("/ai/usage/efficiency/?days=366").json()
    edges = [0, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000]
    edges += [15000, 20000, 30000, 50000, 75000, 100000, 150000, 10**9]
    for model in body["models"]:
        millis = sorted(
            int(s.execution_time_seconds * 1000)
            for s in usage_data.specs
            if s.model_name == model["model_name"]
        )
        exact = millis[max(0, -(-len(millis) // 2) - 1)]  # the nearest-rank median
        estimate = model["execution_time_p50"] * 1000
        bucket = max(i for i, e in enumerate(edges) if e <= exact)
        assert edges[bucket] <= estimate <= edges[bucket + 1]


@pytest.mark.parametrize("group_by", ["model", "provider", "job_type", "generation", "day"])
def test_cost_breakdown_equals_the_rows(api_client, usage_data, noise, group_by):
    response = api_client.get(f"/ai/usage/cost_breakdown/?group_by={group_by}&days=30")
    assert response.status_code == 200, response.content
    body = response.json()
    rows = expected.in_period(usage_data.specs, 30)
    key = {
        "model": lambda s: s.model_name,
        "provider": lambda s: s.provider,
        "job_type": lambda s: s.job_type,
        "generation": lambda s: s.generation,
        "day": lambda s: s.day.isoformat(),
    }[group_by]
    total = expected.cost(rows)
    items = [
        {
            "key": k,
            "jobs": len(g),
            "cost": expected.money(expected.cost(g)),
            "percentage": expected.num(expected.cost(g) * 100, total, 1),
            "tokens": sum(s.total_tokens for s in g),
            "avg_cost_per_job": expected.money(expected.cost(g) / len(g)),
        }
        for k, g in expected.group(rows, key).items()
    ]
    if group_by == "day":
        items.sort(key=lambda i: i["key"])
    else:
        items.sort(key=lambda i: (-Decimal(i["cost"]), i["key"]))
    assert body["items"] == items
    assert body["totals"] == {
        "jobs": len(rows),
        "cost": expected.money(total),
        "tokens": sum(s.total_tokens for s in rows),
    }
    assert body["group_by"] == group_by


def test_cost_breakdown_of_one_model(api_client, usage_data, noise):
    body = api_client.get("/ai/usage/cost_breakdown/?model=o3&group_by=job_type").json()
    rows = [s for s in expected.in_period(usage_data.specs, 30) if s.model_name == "o3"]
    assert body["models"] == ["o3"]
    assert body["totals"]["cost"] == expected.money(expected.cost(rows))
    assert sum(i["jobs"] for i in body["items"]) == len(rows)


def test_efficiency_equals_the_rows(api_client, usage_data, noise):
    body = api_client.get("/ai/usage/efficiency/?days=30").json()
    figures, _ = comparison_expected(usage_data.specs, 30)
    assert {m["model_name"]: m for m in body["models"]} == figures
    assert body["efficiency_insights"] == expected.insights(list(figures.values()))


@pytest.mark.parametrize("interval", ["day", "week"])
def test_trends_equal_the_rows_with_empty_periods_filled(api_client, usage_data, noise, interval):
    body = api_client.get(f"/ai/usage/trends/?days=30&interval={interval}").json()
    rows = expected.in_period(usage_data.specs, 30)
    first = today_utc() - timedelta(days=29)

    def start_of(day):
        return day - timedelta(days=day.weekday()) if interval == "week" else day

    buckets = expected.group(rows, lambda s: start_of(s.day))
    starts, start = [], start_of(first)
    while start <= today_utc():
        starts.append(start)
        start += timedelta(days=7 if interval == "week" else 1)
    points = []
    for start in starts:
        g = buckets.get(start, [])
        points.append(
            {
                "start": start.isoformat(),
                "jobs": len(g),
                "cost": expected.money(expected.cost(g)),
                "tokens": sum(s.total_tokens for s in g),
                "avg_cost_per_job": expected.money_or_none(expected.cost(g), len(g)),
                "avg_execution_time": expected.num(
                    sum((s.execution_time_seconds for s in g), Decimal(0)), len(g), 3
                ),
                "avg_quality": expected.avg_quality(g),
            }
        )
    assert body["points"] == points
    assert body["interval"] == interval


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/ai/usage/dashboard/?days=abc", "days"),
        ("/ai/usage/dashboard/?days=0", "days"),
        ("/ai/usage/dashboard/?days=367", "days"),
        ("/ai/usage/model_comparison/?models=,,", "models"),
        ("/ai/usage/model_comparison/?days=-1", "days"),
        ("/ai/usage/cost_breakdown/?group_by=bogus", "group_by"),
        ("/ai/usage/efficiency/?days=1.5", "days"),
        ("/ai/usage/trends/?interval=x", "interval"),
        ("/ai/usage/trends/?days=7&model=" + "x" * 65, "model"),
    ],
)
def test_invalid_query_parameters_are_400_validation_errors(api_client, usage_data, path, field):
    body = assert_error(api_client.get(path), 400, "VALIDATION_ERROR")
    assert field in body["field_errors"]


def test_analytics_need_authentication_and_a_brand(client, usage_data):
    from rest_framework.test import APIClient

    response = APIClient().get("/ai/usage/dashboard/")
    assert response.status_code == 401


def test_analytics_ignore_another_brands_much_larger_data(
    api_client, brand, other_brand, job_types
):
    own = build_dataset(brand, rows=12, seed=3)
    before = {
        path: api_client.get(path).json()
        for path in (
            "/ai/usage/dashboard/?days=60",
            "/ai/usage/model_comparison/?days=60",
            "/ai/usage/cost_breakdown/?group_by=day&days=60",
            "/ai/usage/efficiency/?days=60",
            "/ai/usage/trends/?days=60&interval=week",
        )
    }
    build_dataset(other_brand, rows=40, seed=4)
    for path, body in before.items():
        assert without_period(api_client.get(path).json()) == without_period(body), path
    assert before["/ai/usage/dashboard/?days=60"]["totals"]["jobs"] == len(
        expected.in_period(own.specs, 60)
    )

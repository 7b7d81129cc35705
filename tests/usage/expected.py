"""Expected analytics computed in plain Python from the fixture specs (never the database).

Written from the definitions in docs/usage.md, independently of ai_usage's code: Decimal
arithmetic over the rows, rounding half-up at the unit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from .conftest import UsageSpec, today_utc

MICRO = Decimal("0.000001")


def in_period(specs: Iterable[UsageSpec], days: int) -> list[UsageSpec]:
    first = today_utc() - timedelta(days=days - 1)
    return [s for s in specs if first <= s.day <= today_utc()]


def money(value: Decimal) -> str:
    return f"{value.quantize(MICRO, ROUND_HALF_UP)}"


def money_or_none(numerator: Decimal, denominator: Decimal | int) -> str | None:
    return money(Decimal(numerator) / Decimal(denominator)) if denominator else None


def num(numerator: Decimal | int, denominator: Decimal | int, places: int) -> float | None:
    if not denominator:
        return None
    quantum = Decimal(1).scaleb(-places)
    return float((Decimal(numerator) / Decimal(denominator)).quantize(quantum, ROUND_HALF_UP))


def cost(specs: list[UsageSpec]) -> Decimal:
    return sum((s.total_cost for s in specs), Decimal(0))


def scored(specs: list[UsageSpec]) -> list[UsageSpec]:
    return [s for s in specs if s.quality_score is not None]


def avg_quality(specs: list[UsageSpec]) -> float | None:
    rated = scored(specs)
    return num(sum((s.quality_score for s in rated), Decimal(0)), len(rated), 2)


def group(specs: list[UsageSpec], key: Callable[[UsageSpec], object]) -> dict:
    groups: dict = defaultdict(list)
    for s in specs:
        groups[key(s)].append(s)
    return dict(groups)


def model_figures(rows: list[UsageSpec]) -> dict:
    """Per-model figures, by the definitions of docs/usage.md."""
    total_cost = cost(rows)
    tokens = sum(s.total_tokens for s in rows)
    completion = sum(s.completion_tokens for s in rows)
    seconds = sum((s.execution_time_seconds for s in rows), Decimal(0))
    rated = scored(rows)
    quality_points = sum((s.quality_score for s in rated), Decimal(0))
    rated_cost = cost(rated)
    return {
        "model_name": rows[0].model_name,
        "generation": rows[0].generation,
        "jobs": len(rows),
        "cached_jobs": sum(1 for s in rows if s.is_cached),
        "cost": money(total_cost),
        "avg_cost_per_job": money(total_cost / len(rows)),
        "tokens": tokens,
        "prompt_tokens": sum(s.prompt_tokens for s in rows),
        "cached_tokens": sum(s.cached_tokens for s in rows),
        "completion_tokens": completion,
        "reasoning_tokens": sum(s.reasoning_tokens for s in rows),
        "avg_execution_time": num(seconds, len(rows), 3),
        "scored_jobs": len(rated),
        "avg_quality": avg_quality(rows),
        "cost_per_1k_tokens": money_or_none(total_cost * 1000, tokens),
        "cost_per_quality_point": money_or_none(rated_cost, quality_points),
        "quality_per_dollar": num(quality_points, rated_cost, 4),
        "tokens_per_second": num(tokens, seconds, 2),
        "output_tokens_per_second": num(completion, seconds, 2),
    }


def best(figures: list[dict], key: str, *, highest: bool) -> str | None:
    candidates = [f for f in figures if f[key] is not None]
    if not candidates:
        return None
    sign = -1 if highest else 1
    return min(
        candidates, key=lambda f: (sign * Decimal(str(f[key])), -f["jobs"], f["model_name"])
    )["model_name"]


def insights(figures: list[dict]) -> dict:
    return {
        "most_cost_effective": best(figures, "cost_per_1k_tokens", highest=False),
        "highest_roi": best(figures, "quality_per_dollar", highest=True),
        "premium_choice": best(figures, "avg_quality", highest=True),
        "fastest": best(figures, "output_tokens_per_second", highest=True),
    }


def dashboard(specs: list[UsageSpec], days: int) -> dict:
    rows = in_period(specs, days)
    total = cost(rows)
    by_model = []
    for rows_of_model in group(rows, lambda s: (s.model_name, s.generation)).values():
        figures = model_figures(rows_of_model)
        figures["percentage"] = num(cost(rows_of_model) * 100, total, 1)
        by_model.append(figures)
    by_model.sort(key=lambda f: (-Decimal(f["cost"]), f["model_name"]))
    by_generation = []
    order = {"new": 0, "legacy": 1}
    for generation, rows_of_gen in sorted(
        group(rows, lambda s: s.generation).items(), key=lambda kv: (order.get(kv[0], 9), kv[0])
    ):
        by_generation.append(
            {
                "generation": generation,
                "models": sorted({s.model_name for s in rows_of_gen}),
                "jobs": len(rows_of_gen),
                "cost": money(cost(rows_of_gen)),
                "percentage": num(cost(rows_of_gen) * 100, total, 1),
                "avg_quality": avg_quality(rows_of_gen),
                "avg_cost_per_job": money(cost(rows_of_gen) / len(rows_of_gen)),
                "tokens": sum(s.total_tokens for s in rows_of_gen),
            }
        )
    return {
        "totals": {
            "jobs": len(rows),
            "cost": money(total),
            "avg_cost_per_job": money_or_none(total, len(rows)),
            "tokens": sum(s.total_tokens for s in rows),
            "cached_jobs": sum(1 for s in rows if s.is_cached),
            "scored_jobs": len(scored(rows)),
            "avg_quality": avg_quality(rows),
        },
        "by_generation": by_generation,
        "by_model": by_model,
        "efficiency_insights": insights(by_model),
    }


def histogram_percentile(rows: list[UsageSpec], p: float) -> float | None:
    """Same estimate as the API's, recomputed from the raw execution times."""
    edges = [100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000]
    edges += [15000, 20000, 30000, 50000, 75000, 100000, 150000]
    millis = [int(s.execution_time_seconds * 1000) for s in rows]
    if not millis:
        return None
    counts = [0] * (len(edges) + 1)
    for m in millis:
        counts[sum(1 for e in edges if e <= m)] += 1
    rank = Decimal(str(p)) * len(millis)
    seen = 0
    lows = [0, *edges]
    for index, count in enumerate(counts):
        if not count or seen + count < rank:
            seen += count
            continue
        lower = max(lows[index], min(millis))
        upper = min(edges[index], max(millis)) if index < len(edges) else max(millis)
        value = (lower + (upper - lower) * (rank - seen) / count) / 1000
        return float(value.quantize(Decimal("0.001"), ROUND_HALF_UP))
    raise AssertionError("unreachable")

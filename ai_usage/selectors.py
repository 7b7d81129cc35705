"""Reads of ai_usage. Every selector takes the brand; analytics read the daily rollups.

Periods are whole UTC days: ``days=N`` covers today (UTC) and the N-1 days before it,
from 00:00 UTC on the first day until now. That is exactly what the daily rollups can
answer, so a dashboard never touches the raw rows and costs the same at 10 thousand or
10 million of them.

The aggregation is SQL (``SUM``/``COUNT``/``MIN``/``MAX`` ``GROUP BY`` over the rollups);
Python only turns the few grouped rows into ratios, picks the best model of a handful,
and formats money. Nothing is invented: a ratio whose denominator is zero is ``null``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import Max, Min, QuerySet, Sum
from django.db.models.functions import TruncWeek
from django.utils import timezone

from ai_core.models import Brand

from .models import LATENCY_BUCKET_EDGES_MS, LATENCY_FIELDS, ROLLUP_COUNTERS, UsageDailyRollup
from .units import money, money_ratio, ratio

GENERATION_ORDER = ("new", "legacy")
BREAKDOWN_FIELDS = {
    "model": "model_name",
    "provider": "provider",
    "job_type": "job_type",
    "generation": "generation",
    "day": "day",
}
_SUMMED = ROLLUP_COUNTERS


def usage_count(*, brand: Brand) -> int:
    """How many usage rows ``brand`` has, from its rollups (exact: they are maintained in
    the transaction of every usage write)."""
    return UsageDailyRollup.objects.filter(brand=brand).aggregate(n=Sum("jobs"))["n"] or 0


@dataclass(frozen=True)
class Period:
    days: int
    since: datetime
    until: datetime

    @property
    def first_day(self) -> date:
        return self.since.date()

    @property
    def last_day(self) -> date:
        return self.until.date()

    def as_dict(self) -> dict[str, Any]:
        return {"days": self.days, "since": self.since.isoformat(), "until": self.until.isoformat()}


def usage_period(*, days: int, now: datetime | None = None) -> Period:
    """Today (UTC) and the ``days - 1`` days before it."""
    now = (now or timezone.now()).astimezone(UTC)
    first = now.date() - timedelta(days=days - 1)
    return Period(days=days, since=datetime.combine(first, time.min, tzinfo=UTC), until=now)


def _rollups(
    *,
    brand: Brand,
    period: Period,
    models: Iterable[str] | None = None,
) -> QuerySet[UsageDailyRollup]:
    rollups = UsageDailyRollup.objects.filter(
        brand=brand, day__gte=period.first_day, day__lte=period.last_day
    )
    if models is not None:
        rollups = rollups.filter(model_name__in=list(models))
    return rollups


def _sums(*, histogram: bool = False) -> dict[str, Any]:
    aggregates: dict[str, Any] = {name: Sum(name) for name in _SUMMED}
    if histogram:
        aggregates.update({name: Sum(name) for name in LATENCY_FIELDS})
        aggregates["execution_ms_min"] = Min("execution_ms_min")
        aggregates["execution_ms_max"] = Max("execution_ms_max")
    return aggregates


def _grouped(
    rollups: QuerySet[UsageDailyRollup], *keys: str, histogram: bool = False
) -> list[dict[str, Any]]:
    return list(rollups.values(*keys).annotate(**_sums(histogram=histogram)).order_by(*keys))


def _combine(rows: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    """Add up already-grouped rows to a coarser grouping (``keys``; none: one total row).

    Used to derive totals and per-generation lines from the per-model rows of the same
    query, so an endpoint scans its rollups once. Only the integer sums of a few group rows
    are added here; the rows themselves were aggregated by the database.
    """
    combined: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        target = combined.setdefault(
            key, {**dict(zip(keys, key, strict=True)), **dict.fromkeys(_SUMMED, 0)}
        )
        for name in _SUMMED:
            target[name] += row[name]
    if not keys and not combined:
        return [dict.fromkeys(_SUMMED, 0)]
    return list(combined.values())


def histogram_percentile(row: dict[str, Any], p: float) -> float | None:
    """The ``p`` quantile (seconds, 3 decimals) of execution time estimated from the
    rollup histogram: find the bucket holding rank ``p × n`` and interpolate linearly
    inside it, the bucket bounded by the observed min and max. Exact to within the bucket
    (buckets grow 1.33–1.67× each). None without jobs."""
    counts = [row[name] or 0 for name in LATENCY_FIELDS]
    total = sum(counts)
    if not total:
        return None
    low_observed, high_observed = row["execution_ms_min"], row["execution_ms_max"]
    edges = (0, *LATENCY_BUCKET_EDGES_MS)
    rank = Decimal(str(p)) * total
    seen = 0
    for index, count in enumerate(counts):
        if not count or seen + count < rank:
            seen += count
            continue
        lower = max(edges[index], low_observed)
        upper = LATENCY_BUCKET_EDGES_MS[index] if index < len(LATENCY_BUCKET_EDGES_MS) else None
        upper = high_observed if upper is None else min(upper, high_observed)
        fraction = (rank - seen) / count
        estimate = (lower + (upper - lower) * fraction) / 1000
        return float(estimate.quantize(Decimal("0.001"), ROUND_HALF_UP))
    return float(Decimal(high_observed) / 1000)


def _model_stats(row: dict[str, Any], *, total_cost: int | None = None) -> dict[str, Any]:
    """Per-model figures from one grouped rollup row (all ratios null when undefined)."""
    jobs, cost = row["jobs"], row["cost_micros"]
    exec_ms, tokens = row["execution_ms"], row["total_tokens"]
    scored, quality_sum = row["quality_count"], row["quality_hundredths"]
    stats = {
        "model_name": row["model_name"],
        "generation": row["generation"],
        "jobs": jobs,
        "cached_jobs": row["cached_jobs"],
        "cost": money(cost),
        "avg_cost_per_job": money_ratio(cost, jobs),
        "tokens": tokens,
        "prompt_tokens": row["prompt_tokens"],
        "cached_tokens": row["cached_tokens"],
        "completion_tokens": row["completion_tokens"],
        "reasoning_tokens": row["reasoning_tokens"],
        "avg_execution_time": ratio(exec_ms, jobs * 1000, 3),
        "scored_jobs": scored,
        "avg_quality": ratio(quality_sum, scored * 100, 2),
        "cost_per_1k_tokens": money_ratio(cost * 1000, tokens),
        "cost_per_quality_point": money_ratio(row["quality_cost_micros"] * 100, quality_sum),
        "quality_per_dollar": ratio(Decimal(quality_sum) * 10_000, row["quality_cost_micros"], 4),
        "tokens_per_second": ratio(tokens * 1000, exec_ms, 2),
        "output_tokens_per_second": ratio(row["completion_tokens"] * 1000, exec_ms, 2),
    }
    if total_cost is not None:
        stats["percentage"] = ratio(cost * 100, total_cost, 1)
    if "execution_ms_max" in row:
        stats["execution_time_p50"] = histogram_percentile(row, 0.5)
        stats["execution_time_p95"] = histogram_percentile(row, 0.95)
    return stats


def _best(
    stats: list[dict[str, Any]], key: str, *, highest: bool
) -> tuple[dict[str, Any] | None, Any]:
    """The model with the best non-null ``key`` (ties: more jobs, then name)."""
    candidates = [s for s in stats if s[key] is not None]
    if not candidates:
        return None, None

    def value(s: dict[str, Any]) -> Decimal:
        number = Decimal(str(s[key]))
        return -number if highest else number

    best = min(candidates, key=lambda s: (value(s), -s["jobs"], s["model_name"]))
    return best, best[key]


def efficiency_insights(stats: list[dict[str, Any]]) -> dict[str, str | None]:
    """The seed's four picks, each from measured figures or null:

    - ``most_cost_effective``: lowest cost per 1K tokens;
    - ``highest_roi``: most quality points per dollar over scored jobs;
    - ``premium_choice``: highest average feedback quality;
    - ``fastest``: highest output tokens per second of execution.
    """
    picks = {
        "most_cost_effective": _best(stats, "cost_per_1k_tokens", highest=False)[0],
        "highest_roi": _best(stats, "quality_per_dollar", highest=True)[0],
        "premium_choice": _best(stats, "avg_quality", highest=True)[0],
        "fastest": _best(stats, "output_tokens_per_second", highest=True)[0],
    }
    return {name: pick["model_name"] if pick else None for name, pick in picks.items()}


def _generation_sort_key(generation: str) -> tuple[int, str]:
    order = GENERATION_ORDER.index(generation) if generation in GENERATION_ORDER else 99
    return order, generation


def usage_dashboard(*, brand: Brand, period: Period) -> dict[str, Any]:
    """``period``, ``totals``, ``by_generation``, ``by_model``, ``efficiency_insights``."""
    model_rows = _grouped(_rollups(brand=brand, period=period), "model_name", "generation")
    (totals,) = _combine(model_rows)
    total_cost = totals["cost_micros"]
    by_model = [_model_stats(row, total_cost=total_cost) for row in model_rows]
    by_model.sort(key=lambda s: (-int(Decimal(s["cost"]) * 1_000_000), s["model_name"]))
    by_generation = []
    for row in sorted(
        _combine(model_rows, "generation"), key=lambda r: _generation_sort_key(r["generation"])
    ):
        by_generation.append(
            {
                "generation": row["generation"],
                "models": sorted(
                    {s["model_name"] for s in by_model if s["generation"] == row["generation"]}
                ),
                "jobs": row["jobs"],
                "cost": money(row["cost_micros"]),
                "percentage": ratio(row["cost_micros"] * 100, total_cost, 1),
                "avg_quality": ratio(row["quality_hundredths"], row["quality_count"] * 100, 2),
                "avg_cost_per_job": money_ratio(row["cost_micros"], row["jobs"]),
                "tokens": row["total_tokens"],
            }
        )
    return {
        "period": period.as_dict(),
        "totals": {
            "jobs": totals["jobs"],
            "cost": money(total_cost),
            "avg_cost_per_job": money_ratio(total_cost, totals["jobs"]),
            "tokens": totals["total_tokens"],
            "cached_jobs": totals["cached_jobs"],
            "scored_jobs": totals["quality_count"],
            "avg_quality": ratio(totals["quality_hundredths"], totals["quality_count"] * 100, 2),
        },
        "by_generation": by_generation,
        "by_model": by_model,
        "efficiency_insights": efficiency_insights(by_model),
    }


def _generation_summary(
    row: dict[str, Any] | None, models: list[str], use_cases: list[str]
) -> dict[str, Any]:
    if row is None:
        return {
            "models": [],
            "jobs": 0,
            "avg_quality": None,
            "avg_cost": None,
            "avg_execution_time": None,
            "use_cases": [],
        }
    return {
        "models": models,
        "jobs": row["jobs"],
        "avg_quality": ratio(row["quality_hundredths"], row["quality_count"] * 100, 2),
        "avg_cost": money_ratio(row["cost_micros"], row["jobs"]),
        "avg_execution_time": ratio(row["execution_ms"], row["jobs"] * 1000, 3),
        "use_cases": use_cases,
    }


def _recommendations(stats: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Recommendations derived from the compared models' figures (text, and the figure
    each one rests on). Each is null when the data cannot support it."""
    details: dict[str, Any] = dict.fromkeys(
        ("cost_optimization", "quality_premium", "balanced_approach", "default_choice")
    )
    best, value = _best(stats, "cost_per_quality_point", highest=False)
    if best is not None:
        details["cost_optimization"] = {
            "model": best["model_name"],
            "metric": "cost_per_quality_point",
            "value": value,
            "text": f"Use {best['model_name']} to cut cost: lowest cost per quality point "
            f"({value} USD).",
        }
    else:
        best, value = _best(stats, "avg_cost_per_job", highest=False)
        if best is not None:
            details["cost_optimization"] = {
                "model": best["model_name"],
                "metric": "avg_cost_per_job",
                "value": value,
                "text": f"Use {best['model_name']} to cut cost: lowest average cost per job "
                f"({value} USD).",
            }
    best, value = _best(stats, "avg_quality", highest=True)
    if best is not None:
        details["quality_premium"] = {
            "model": best["model_name"],
            "metric": "avg_quality",
            "value": value,
            "text": f"Reserve {best['model_name']} for quality-critical work: highest average "
            f"quality ({value}/10 over {best['scored_jobs']} scored jobs).",
        }
    balanced = _balanced_choice(stats)
    if balanced is not None:
        details["balanced_approach"] = {
            "model": balanced["model_name"],
            "metric": "rank_sum",
            "value": balanced["rank_sum"],
            "text": f"{balanced['model_name']} balances cost, quality and speed best "
            f"(lowest rank sum over {', '.join(balanced['criteria'])}).",
        }
    if stats:
        most_used = min(stats, key=lambda s: (-s["jobs"], s["model_name"]))
        details["default_choice"] = {
            "model": most_used["model_name"],
            "metric": "jobs",
            "value": most_used["jobs"],
            "text": f"{most_used['model_name']} is the brand's workhorse: most jobs in the "
            f"period ({most_used['jobs']}).",
        }
    texts = {name: detail["text"] if detail else None for name, detail in details.items()}
    return texts, details


def _balanced_choice(stats: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Lowest sum of ranks on average cost per job (low), average quality (high, when at
    least two models are scored) and average execution time (low). Ties: more jobs, name."""
    if len(stats) < 2:
        return None
    criteria = [("avg_cost_per_job", False), ("avg_execution_time", False)]
    if sum(1 for s in stats if s["avg_quality"] is not None) >= 2:
        criteria.insert(1, ("avg_quality", True))
    rank_sums = dict.fromkeys((s["model_name"] for s in stats), 0)
    for key, highest in criteria:
        present = [s for s in stats if s[key] is not None]
        ordered = sorted(
            present,
            key=lambda s, key=key, highest=highest: (
                -Decimal(str(s[key])) if highest else Decimal(str(s[key]))
            ),
        )
        for position, s in enumerate(ordered, start=1):
            rank_sums[s["model_name"]] += position
        for s in stats:
            if s[key] is None:
                rank_sums[s["model_name"]] += len(stats)
    best = min(stats, key=lambda s: (rank_sums[s["model_name"]], -s["jobs"], s["model_name"]))
    return {
        "model_name": best["model_name"],
        "rank_sum": rank_sums[best["model_name"]],
        "criteria": [key for key, _ in criteria],
    }


def usage_model_comparison(
    *, brand: Brand, period: Period, models: list[str] | None = None
) -> dict[str, Any]:
    """``generation_comparison`` (new vs legacy), per-model ``models`` and
    ``recommendations``, over the compared models (all models used when ``models`` is
    None)."""
    rollups = _rollups(brand=brand, period=period, models=models)
    model_rows = _grouped(rollups, "model_name", "generation", histogram=True)
    stats = [_model_stats(row) for row in model_rows]
    stats.sort(key=lambda s: (_generation_sort_key(s["generation"]), s["model_name"]))
    generations = {row["generation"]: row for row in _combine(model_rows, "generation")}
    use_cases: dict[str, list[tuple[int, str]]] = {}
    for row in rollups.values("generation", "job_type").annotate(n=Sum("jobs")).order_by():
        use_cases.setdefault(row["generation"], []).append((-row["n"], row["job_type"]))
    comparison = {}
    for generation in GENERATION_ORDER:
        names = sorted({s["model_name"] for s in stats if s["generation"] == generation})
        top = [code for _, code in sorted(use_cases.get(generation, []))[:3]]
        comparison[f"{generation}_models"] = _generation_summary(
            generations.get(generation), names, top
        )
    texts, details = _recommendations(stats)
    return {
        "period": period.as_dict(),
        "models_requested": models,
        "generation_comparison": comparison,
        "models": stats,
        "recommendations": texts,
        "recommendation_details": details,
    }


def usage_cost_breakdown(
    *, brand: Brand, period: Period, group_by: str, models: list[str] | None = None
) -> dict[str, Any]:
    """Cost, jobs and tokens per ``group_by`` value (model, provider, job_type, generation,
    day); most expensive first, or chronological for ``day``."""
    field = BREAKDOWN_FIELDS[group_by]
    groups = _grouped(_rollups(brand=brand, period=period, models=models), field)
    (totals,) = _combine(groups)
    items = []
    for row in groups:
        key = row[field]
        items.append(
            {
                "key": key.isoformat() if isinstance(key, date) else key,
                "jobs": row["jobs"],
                "cost": money(row["cost_micros"]),
                "percentage": ratio(row["cost_micros"] * 100, totals["cost_micros"], 1),
                "tokens": row["total_tokens"],
                "avg_cost_per_job": money_ratio(row["cost_micros"], row["jobs"]),
                "_cost": row["cost_micros"],
            }
        )
    if group_by != "day":
        items.sort(key=lambda item: (-item["_cost"], item["key"]))
    for item in items:
        del item["_cost"]
    return {
        "period": period.as_dict(),
        "group_by": group_by,
        "models": models,
        "totals": {
            "jobs": totals["jobs"],
            "cost": money(totals["cost_micros"]),
            "tokens": totals["total_tokens"],
        },
        "items": items,
    }


def usage_efficiency(
    *, brand: Brand, period: Period, models: list[str] | None = None
) -> dict[str, Any]:
    """Per model: cost per 1K tokens, cost per quality point, tokens per second (all and
    output only), execution time p50/p95 (histogram estimate)."""
    rollups = _rollups(brand=brand, period=period, models=models)
    stats = [
        _model_stats(row) for row in _grouped(rollups, "model_name", "generation", histogram=True)
    ]
    stats.sort(key=lambda s: (_generation_sort_key(s["generation"]), s["model_name"]))
    return {
        "period": period.as_dict(),
        "models": stats,
        "efficiency_insights": efficiency_insights(stats),
    }


def usage_trends(
    *, brand: Brand, period: Period, interval: str, models: list[str] | None = None
) -> dict[str, Any]:
    """One point per day or ISO week (Monday) of the period, empty ones included with zero
    jobs and null averages. A week's figures cover only its days inside the period."""
    rollups = _rollups(brand=brand, period=period, models=models)
    if interval == "week":
        grouped = (
            rollups.annotate(bucket=TruncWeek("day"))
            .values("bucket")
            .annotate(**_sums())
            .order_by("bucket")
        )
        first = period.first_day - timedelta(days=period.first_day.weekday())
        step = timedelta(days=7)
    else:
        grouped = rollups.values("day").annotate(**_sums()).order_by("day")
        first, step = period.first_day, timedelta(days=1)
    rows = {}
    for row in grouped:
        bucket = row.pop("bucket", None) or row.pop("day")
        if isinstance(bucket, datetime):
            bucket = bucket.date()
        rows[bucket] = row
    points = []
    start = first
    while start <= period.last_day:
        row = rows.get(start)
        jobs = row["jobs"] if row else 0
        cost = row["cost_micros"] if row else 0
        points.append(
            {
                "start": start.isoformat(),
                "jobs": jobs,
                "cost": money(cost),
                "tokens": row["total_tokens"] if row else 0,
                "avg_cost_per_job": money_ratio(cost, jobs),
                "avg_execution_time": ratio(row["execution_ms"], jobs * 1000, 3) if row else None,
                "avg_quality": (
                    ratio(row["quality_hundredths"], row["quality_count"] * 100, 2) if row else None
                ),
            }
        )
        start += step
    return {"period": period.as_dict(), "interval": interval, "points": points}

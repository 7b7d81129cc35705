"""Model recommendation: deterministic scoring of the registry, refined by brand history.

Candidates are the models that are enabled (and allowed by AI_ENABLE_O3) AND that the
brand has a credential for: we never recommend a model the brand cannot call.

Each candidate gets three fits in [0, 1]:
- quality: the registry profile word (highest 1.0 … basic 0.3), blended with the brand's
  own mean feedback score / 10 once there is history (weight n / (n + 10));
- cost: 1 − estimated cost / the most expensive candidate's estimated cost, where the
  estimate is the task description's exact prompt tokens plus an output size that grows
  with complexity (300 … 4,000 tokens), or the brand's mean observed cost when it has one;
- speed: the profile word (fastest 1.0 … slow 0.2), or the brand's observed mean latency
  mapped onto the same scale.
Reasoning models get a bonus proportional to complexity, chat models a small one for simple
tasks. A model below the required quality is penalized by the shortfall. The score is

    quality_requirement·quality + budget_constraint·cost + (1 − complexity)·0.3·speed
    + fit bonus − 2·max(0, quality_requirement − quality)

Ties break on name, so the same inputs always give the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Avg, Count

from ai_core.models import Brand
from ai_providers.selectors import providers_for_model

from .models import AIModel, OpenAIJob
from .pricing import estimate_cost
from .registry import ai_model_list
from .tokens import count_text_tokens

QUALITY = {
    "highest": 1.0,
    "very_high": 0.9,
    "high": 0.8,
    "good": 0.7,
    "medium": 0.6,
    "low": 0.4,
    "basic": 0.3,
}
SPEED = {"fastest": 1.0, "very_fast": 0.9, "fast": 0.8, "medium": 0.5, "slow": 0.2, "slowest": 0.1}
HISTORY_WEIGHT = 10  # jobs of history that weigh as much as the registry profile


@dataclass(frozen=True)
class Candidate:
    model: AIModel
    score: float
    estimated_cost: Decimal
    quality: float
    cost_fit: float
    speed: float
    history_jobs: int


def _output_tokens(complexity: float, model: AIModel) -> int:
    return min(model.max_output_tokens, round(300 + 3700 * complexity))


def _history(brand: Brand) -> dict[str, dict[str, Any]]:
    rows = (
        OpenAIJob.objects.filter(brand=brand)
        .values("model")
        .annotate(
            n=Count("job_id"), avg_cost=Avg("cost_usd"), avg_time=Avg("execution_time_seconds")
        )
        .order_by()
    )
    return {row["model"]: row for row in rows}


def _latency_to_speed(seconds: float) -> float:
    # 1 s or less is "fastest", 30 s or more is "slowest", linear in between.
    return max(0.1, min(1.0, 1.0 - (seconds - 1.0) * 0.9 / 29.0))


def recommend_model(
    *,
    brand: Brand,
    task_description: str,
    complexity_score: float,
    budget_constraint: float,
    quality_requirement: float,
) -> dict[str, Any]:
    """The recommended model, scored alternatives with estimated cost, and the reasons."""
    history = _history(brand)
    models = [
        m
        for m in ai_model_list(available_only=True)
        if providers_for_model(brand=brand, model=m.name)
    ]
    if not models:
        return {
            "recommended_model": None,
            "alternatives": [],
            "reasoning": ["No enabled model has a credential for this brand: add one first."],
        }
    prompt_tokens = {
        m.tokenizer: count_text_tokens(task_description, m.tokenizer) + 20 for m in models
    }
    costs: dict[str, Decimal] = {}
    for m in models:
        # This task's cost at the registry's prices, refined by the brand's average cost on
        # the model as speed is by its latency: a few past calls (of other sizes) move it a
        # little, many calls a lot. So models with and without history compare on one basis.
        cost = estimate_cost(
            m,
            prompt_tokens=prompt_tokens[m.tokenizer],
            max_output_tokens=_output_tokens(complexity_score, m),
        )
        past = history.get(m.name)
        if past and past["avg_cost"] is not None:
            weight = Decimal(past["n"]) / Decimal(past["n"] + HISTORY_WEIGHT)
            cost = (1 - weight) * cost + weight * Decimal(past["avg_cost"])
        costs[m.name] = cost.quantize(Decimal("0.000001"))
    max_cost = max(costs.values()) or Decimal(1)
    candidates = []
    for m in models:
        profile = m.performance_profile or {}
        quality = QUALITY.get(str(profile.get("quality")), 0.5)
        speed = SPEED.get(str(profile.get("speed")), 0.5)
        past = history.get(m.name)
        n = past["n"] if past else 0
        if past and past["avg_time"] is not None:
            weight = n / (n + HISTORY_WEIGHT)
            speed = (1 - weight) * speed + weight * _latency_to_speed(float(past["avg_time"]))
        cost_fit = 1.0 - float(costs[m.name] / max_cost)
        bonus = 0.4 * complexity_score if m.is_reasoning else 0.1 * (1.0 - complexity_score)
        shortfall = max(0.0, quality_requirement - quality)
        score = (
            quality_requirement * quality
            + budget_constraint * cost_fit
            + (1.0 - complexity_score) * 0.3 * speed
            + bonus
            - 2.0 * shortfall
        )
        candidates.append(
            Candidate(
                m, round(score, 6), costs[m.name], quality, round(cost_fit, 4), round(speed, 4), n
            )
        )
    candidates.sort(key=lambda c: (-c.score, c.model.name))
    best = candidates[0]
    reasoning = [
        f"{best.model.name} scores highest ({best.score:.3f}) for complexity "
        f"{complexity_score:.2f}, budget constraint {budget_constraint:.2f} and quality "
        f"requirement {quality_requirement:.2f}.",
        f"Quality fit {best.quality:.2f} "
        f"({(best.model.performance_profile or {}).get('quality')}), cost fit "
        f"{best.cost_fit:.2f} (estimated ${best.estimated_cost:.6f}), speed {best.speed:.2f}.",
    ]
    if best.model.is_reasoning and complexity_score >= 0.6:
        reasoning.append("A reasoning model suits a task this complex.")
    if best.history_jobs:
        reasoning.append(
            f"Refined by this brand's history: {best.history_jobs} completed jobs on "
            f"{best.model.name}."
        )
    if len(candidates) == len(models) and len(models) < len(
        list(ai_model_list(available_only=True))
    ):
        reasoning.append("Models without a credential for this brand were not considered.")
    return {
        "recommended_model": best.model.name,
        "estimated_cost": f"{best.estimated_cost:.6f}",
        "score": best.score,
        "alternatives": [
            {
                "model": c.model.name,
                "score": c.score,
                "estimated_cost": f"{c.estimated_cost:.6f}",
                "performance_profile": c.model.performance_profile,
            }
            for c in candidates[1:]
        ],
        "reasoning": reasoning,
    }

"""The job type catalogue and its idempotent seeding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction

from ..models import AIJobCategory, AIJobType

CATEGORIES = [
    ("generation", "Generation", "Write new text: articles, replies, creative content."),
    ("analysis", "Analysis", "Read and assess content: SEO, marketing, quality."),
    ("transformation", "Transformation", "Rewrite content: summaries, translations."),
    ("reasoning", "Reasoning", "Multi-step reasoning on reasoning models (o3 family)."),
]

JOB_TYPES: list[dict[str, Any]] = [
    {"code": "chat_completion", "name": "Chat completion", "category": "generation"},
    {"code": "text_generation", "name": "Text generation", "category": "generation"},
    {"code": "content_analysis", "name": "Content analysis", "category": "analysis"},
    {"code": "seo_analysis", "name": "SEO analysis", "category": "analysis"},
    {"code": "summarization", "name": "Summarization", "category": "transformation"},
    {"code": "translation", "name": "Translation", "category": "transformation"},
]

O3_JOB_TYPES: list[dict[str, Any]] = [
    {
        "code": "complex_reasoning",
        "name": "Complex reasoning",
        "category": "reasoning",
        "default_model": "o3",
        "requires_reasoning": True,
    },
    {
        "code": "deep_analysis",
        "name": "Deep analysis",
        "category": "reasoning",
        "default_model": "o3",
        "requires_reasoning": True,
    },
    {
        "code": "cost_optimized_reasoning",
        "name": "Cost-optimized reasoning",
        "category": "reasoning",
        "default_model": "o3-mini",
        "requires_reasoning": True,
    },
]


@dataclass(frozen=True)
class JobTypesSeedResult:
    """(created, updated) counts, categories and job types apart."""

    categories: tuple[int, int]
    job_types: tuple[int, int]

    @property
    def changed(self) -> bool:
        return any(self.categories) or any(self.job_types)


@transaction.atomic
def job_types_seed(*, include_o3: bool) -> JobTypesSeedResult:
    """Create or update the catalogue (categories, then job types). Idempotent."""
    categories_created = categories_updated = 0
    categories = {}
    for code, name, description in CATEGORIES:
        category, was_created, was_updated = _upsert(
            AIJobCategory, code, {"name": name, "description": description}
        )
        categories[code] = category
        categories_created += was_created
        categories_updated += was_updated
    created = updated = 0
    for spec in JOB_TYPES + (O3_JOB_TYPES if include_o3 else []):
        fields = {
            "name": spec["name"],
            "category": categories[spec["category"]],
            "handler": "chat_completion",
            "default_model": spec.get("default_model", ""),
            "requires_reasoning": spec.get("requires_reasoning", False),
            "is_active": True,
        }
        _, was_created, was_updated = _upsert(AIJobType, spec["code"], fields)
        created += was_created
        updated += was_updated
    return JobTypesSeedResult(
        categories=(categories_created, categories_updated), job_types=(created, updated)
    )


def _upsert(model: type, code: str, fields: dict[str, Any]) -> tuple[Any, bool, bool]:
    obj = model.objects.filter(code=code).first()
    if obj is None:
        return model.objects.create(code=code, **fields), True, False
    changed = [name for name, value in fields.items() if getattr(obj, name) != value]
    for name in changed:
        setattr(obj, name, fields[name])
    if changed:
        obj.save(update_fields=changed)
    return obj, False, bool(changed)

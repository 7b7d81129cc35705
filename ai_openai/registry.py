"""Reads over the model registry, and the one service that seeds it from the data file.

The registry is global reference data (not brand-owned), so these selectors take no brand.
"Available" means callable right now: ``enabled`` and, for the o3 family, ``AI_ENABLE_O3``.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import logging
from decimal import Decimal
from importlib import resources
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from megahub.refcache import RefCache

from .errors import ModelDisabled, UnknownModel
from .models import AIModel

logger = logging.getLogger(__name__)

SEED_FILE = "data/models.json"
_DECIMAL_FIELDS = ("input_price", "cached_input_price", "output_price")


def o3_enabled() -> bool:
    return bool(getattr(settings, "AI_ENABLE_O3", True))


def ai_model_list(*, available_only: bool = False) -> QuerySet[AIModel]:
    """All registry rows by name; ``available_only`` keeps the ones callable now."""
    qs = AIModel.objects.order_by("name")
    if available_only:
        qs = qs.filter(enabled=True)
        if not o3_enabled():
            qs = qs.filter(is_o3_family=False)
    return qs


_models = RefCache("ai_models")


def ai_model_get(*, name: str) -> AIModel | None:
    """The registry row called ``name`` (cached per process: megahub.refcache)."""
    return _models.get(
        name, lambda: AIModel.objects.filter(name=name).first(), keep=lambda m: m is not None
    )


def ai_model_is_available(model: AIModel) -> bool:
    return model.enabled and (o3_enabled() or not model.is_o3_family)


def ai_model_suggestions(*, name: str, limit: int = 5) -> list[str]:
    """Available names closest to ``name`` (difflib), then the other available names."""
    available = list(ai_model_list(available_only=True).values_list("name", flat=True))
    close = difflib.get_close_matches(name, available, n=limit, cutoff=0.5)
    rest = [n for n in available if n not in close]
    return (close + rest)[:limit]


def ai_model_alternatives(*, model: AIModel, limit: int = 5) -> list[str]:
    """Available models to use instead of ``model``: same kind first, then the others."""
    others = [m for m in ai_model_list(available_only=True) if m.pk != model.pk]
    same_kind = [m.name for m in others if m.kind == model.kind]
    other_kind = [m.name for m in others if m.kind != model.kind]
    return (same_kind + other_kind)[:limit]


def ai_model_resolve(*, name: str, field: str = "model") -> AIModel:
    """The available registry model called ``name``.

    Raises UnknownModel (400, ``suggestions``) when there is no such row, and ModelDisabled
    (403) as ``ai_model_check_available`` does. ``field`` names the request field in
    ``field_errors``.
    """
    model = ai_model_get(name=name)
    if model is None:
        # Echoed at most 64 characters long (a 100 KB name came back three times).
        shown = name if len(name) <= 64 else name[:64] + "…"
        raise UnknownModel(
            f"Unknown model '{shown}'.",
            field_errors={field: [f"Unknown model '{shown}'."]},
            suggestions=ai_model_suggestions(name=name),
            model=shown,
        )
    ai_model_check_available(model, field=field)
    return model


def ai_model_check_available(model: AIModel, *, field: str = "model") -> None:
    """Raise ModelDisabled (403, ``alternatives``) unless ``model`` is callable now.

    Disabled means ``enabled`` is off, or the model is o3-family while ``AI_ENABLE_O3`` is off.
    """
    if ai_model_is_available(model):
        return
    reason = "AI_ENABLE_O3 is off" if model.enabled else "it is disabled in the registry"
    alternatives = ai_model_alternatives(model=model)
    raise ModelDisabled(
        f"Model {model.name} is disabled ({reason}).",
        field_errors={field: [f"Model {model.name} is disabled."]},
        suggestions=alternatives,
        model=model.name,
        alternatives=alternatives,
    )


@functools.cache
def _seed_file_entries() -> tuple[dict[str, Any], ...]:
    raw = json.loads(resources.files("ai_openai").joinpath(SEED_FILE).read_text("utf-8"))
    return tuple(raw["models"])


def load_seed_data() -> list[dict[str, Any]]:
    """The model entries of ``ai_openai/data/models.json`` with prices as ``Decimal``."""
    entries = []
    for entry in copy.deepcopy(_seed_file_entries()):
        for field in _DECIMAL_FIELDS:
            if entry.get(field) is not None:
                entry[field] = Decimal(entry[field])
        entries.append(entry)
    return entries


def _differs(row: AIModel, values: dict[str, Any]) -> bool:
    return any(getattr(row, field) != value for field, value in values.items())


@transaction.atomic
def registry_seed(*, include_o3: bool, update_existing: bool = False) -> tuple[int, int]:
    """Load the data file into the registry; returns ``(created, updated)``.

    Idempotent: a second run with the same arguments changes nothing and returns (0, 0).
    Missing models are created. Existing rows are left as the admin edited them unless
    ``update_existing``, which rewrites every seeded field that differs from the file
    (rows already equal are not counted). With ``include_o3=False`` o3-family models are
    neither created nor updated; rows already present are never deleted. Existing rows are
    locked while compared; a concurrent seed creating the same name is ignored.
    """
    entries = {e["name"]: e for e in load_seed_data() if include_o3 or not e["is_o3_family"]}
    existing = {
        row.name: row for row in AIModel.objects.select_for_update().filter(name__in=list(entries))
    }
    missing = [AIModel(**entry) for name, entry in entries.items() if name not in existing]
    AIModel.objects.bulk_create(missing, ignore_conflicts=True)
    updated = 0
    if update_existing:
        for name, row in existing.items():
            values = {k: v for k, v in entries[name].items() if k != "name"}
            if _differs(row, values):
                for field, value in values.items():
                    setattr(row, field, value)
                row.save()
                updated += 1
    logger.info(
        "openai.registry.seeded",
        extra={"models_created": len(missing), "models_updated": updated, "include_o3": include_o3},
    )
    return len(missing), updated

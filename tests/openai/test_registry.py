"""SPEC §4: the registry table, seeded idempotently from its data file, editable in the admin."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from ai_openai.models import AIModel
from ai_openai.registry import (
    ai_model_alternatives,
    ai_model_list,
    ai_model_suggestions,
    load_seed_data,
    registry_seed,
)
from tests.factories import make_user

pytestmark = pytest.mark.django_db

O3_FAMILY = {"o3", "o3-mini", "o4-mini"}

# name: (input, cached input, output, context window, max output, encoding, generation, kind,
#        content format)
EXPECTED = {
    "o3": ("2.00", "0.50", "8.00", 200_000, 100_000, "o200k_base", "new", "reasoning", "parts"),
    "o3-mini": (
        "1.10", "0.55", "4.40", 200_000, 100_000, "o200k_base", "new", "reasoning", "parts"
    ),
    "o4-mini": (
        "1.10", "0.275", "4.40", 200_000, 100_000, "o200k_base", "new", "reasoning", "parts"
    ),
    "gpt-4.1": ("2.00", "0.50", "8.00", 1_047_576, 32_768, "o200k_base", "new", "chat", "parts"),
    "gpt-4.1-mini": (
        "0.40", "0.10", "1.60", 1_047_576, 32_768, "o200k_base", "new", "chat", "parts"
    ),
    "gpt-4o": (
        "2.50", "1.25", "10.00", 128_000, 16_384, "o200k_base", "legacy", "chat", "string"
    ),
    "gpt-4o-mini": (
        "0.15", "0.075", "0.60", 128_000, 16_384, "o200k_base", "legacy", "chat", "string"
    ),
    "gpt-4-turbo": (
        "10.00", None, "30.00", 128_000, 4_096, "cl100k_base", "legacy", "chat", "string"
    ),
}  # fmt: skip


def _snapshot() -> dict[str, tuple]:
    return {
        m["name"]: tuple(sorted((k, str(v)) for k, v in m.items()))
        for m in AIModel.objects.values()
    }


def test_seed_creates_every_model_with_spec_prices_and_limits():
    created, updated = registry_seed(include_o3=True)
    assert (created, updated) == (len(EXPECTED), 0)
    rows = {m.name: m for m in AIModel.objects.all()}
    assert set(rows) == set(EXPECTED)
    for name, (inp, cached, out, ctx, max_out, enc, gen, kind, fmt) in EXPECTED.items():
        row = rows[name]
        assert row.input_price == Decimal(inp), name
        assert row.cached_input_price == (Decimal(cached) if cached else None), name
        assert row.output_price == Decimal(out), name
        assert (row.context_window, row.max_output_tokens) == (ctx, max_out), name
        assert (row.tokenizer, row.generation, row.kind, row.content_format) == (
            enc,
            gen,
            kind,
            fmt,
        ), name
        assert row.is_o3_family == (name in O3_FAMILY), name
        assert row.enabled, name
        assert set(row.performance_profile) == {"speed", "quality", "cost"}, name
        row.full_clean()  # the seed passes the admin's own validation


def test_reasoning_models_default_reasoning_effort_and_forbid_sampling_params():
    registry_seed(include_o3=True)
    for model in AIModel.objects.filter(kind="reasoning"):
        assert model.defaults == {"reasoning_effort": "medium"}
        assert model.required_params == ["reasoning_effort"]
        for param in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "logprobs"):
            assert param in model.forbidden_params
    for model in AIModel.objects.filter(kind="chat"):
        assert model.forbidden_params == ["reasoning_effort"]


def test_o3_profile_is_the_seeds():
    registry_seed(include_o3=True)
    assert AIModel.objects.get(name="o3").performance_profile == {
        "speed": "slow",
        "quality": "highest",
        "cost": "high",
    }


def test_seeding_twice_changes_nothing():
    assert registry_seed(include_o3=True) == (8, 0)
    before = _snapshot()
    assert registry_seed(include_o3=True) == (0, 0)
    assert registry_seed(include_o3=True, update_existing=True) == (0, 0)
    assert _snapshot() == before


def test_without_o3_the_o3_family_is_not_seeded_and_can_be_added_later():
    assert registry_seed(include_o3=False) == (5, 0)
    assert not AIModel.objects.filter(name__in=O3_FAMILY).exists()
    assert not AIModel.objects.filter(is_o3_family=True).exists()
    assert registry_seed(include_o3=True) == (3, 0)
    assert AIModel.objects.filter(is_o3_family=True).count() == 3


def test_admin_edits_survive_reseeding_unless_update_existing():
    registry_seed(include_o3=True)
    AIModel.objects.filter(name="gpt-4o").update(input_price=Decimal("3.000000"), enabled=False)
    assert registry_seed(include_o3=True) == (0, 0)
    edited = AIModel.objects.get(name="gpt-4o")
    assert (edited.input_price, edited.enabled) == (Decimal("3.000000"), False)
    assert registry_seed(include_o3=True, update_existing=True) == (0, 1)
    restored = AIModel.objects.get(name="gpt-4o")
    assert (restored.input_price, restored.enabled) == (Decimal("2.50"), True)


def test_seed_file_prices_are_decimals_never_floats():
    for entry in load_seed_data():
        for field in ("input_price", "output_price"):
            assert isinstance(entry[field], Decimal)


def test_available_models_respect_enabled_and_ai_enable_o3(registry, settings):
    names = set(ai_model_list(available_only=True).values_list("name", flat=True))
    assert names == set(EXPECTED)
    settings.AI_ENABLE_O3 = False
    AIModel.objects.filter(name="gpt-4o-mini").update(enabled=False)
    names = set(ai_model_list(available_only=True).values_list("name", flat=True))
    assert names == set(EXPECTED) - O3_FAMILY - {"gpt-4o-mini"}
    assert set(ai_model_list().values_list("name", flat=True)) == set(EXPECTED)


def test_suggestions_put_close_names_first(registry):
    assert ai_model_suggestions(name="gpt4o")[0] == "gpt-4o"
    assert ai_model_suggestions(name="o3mini")[0] == "o3-mini"
    assert len(ai_model_suggestions(name="zzz")) == 5


def test_alternatives_prefer_the_same_kind(registry, settings):
    alternatives = ai_model_alternatives(model=registry["o3"])
    assert set(alternatives[:2]) == {"o3-mini", "o4-mini"}
    settings.AI_ENABLE_O3 = False
    alternatives = ai_model_alternatives(model=registry["o3"])
    assert alternatives
    assert not set(alternatives) & O3_FAMILY


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"required_params": ["reasoning_effort", "nope"]}, "required_params"),
        ({"forbidden_params": ["max_completion_tokens"]}, "forbidden_params"),
        ({"defaults": {"temperature": 1}}, "defaults"),
        ({"allowed_params": "temperature"}, "allowed_params"),
        ({"performance_profile": {"colour": "blue"}}, "performance_profile"),
        ({"max_output_tokens": 300_000}, "max_output_tokens"),
        ({"input_price": Decimal("-1")}, "input_price"),
        ({"cached_input_price": Decimal("-0.000001")}, "cached_input_price"),
        ({"output_price": Decimal("-8")}, "output_price"),
    ],
)
def test_inconsistent_rules_are_refused_by_model_validation(registry, changes, field):
    model = registry["o3"]
    for key, value in changes.items():
        setattr(model, key, value)
    with pytest.raises(ValidationError) as excinfo:
        model.full_clean()
    assert field in excinfo.value.message_dict


def test_admin_lists_filters_and_searches_the_registry(registry, client):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    admin_client = client
    response = admin_client.get("/admin/ai_openai/aimodel/")
    assert response.status_code == 200
    assert b"gpt-4-turbo" in response.content
    response = admin_client.get("/admin/ai_openai/aimodel/", {"q": "o3"})
    assert response.status_code == 200
    assert b"o3-mini" in response.content
    assert b"gpt-4-turbo" not in response.content
    response = admin_client.get("/admin/ai_openai/aimodel/", {"generation__exact": "legacy"})
    assert b"gpt-4o-mini" in response.content
    assert b"o4-mini" not in response.content
    response = admin_client.get(f"/admin/ai_openai/aimodel/{registry['o3'].pk}/change/")
    assert response.status_code == 200

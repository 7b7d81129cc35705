"""Cost to the micro-dollar from usage and registry prices (hand-computed expectations)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ai_openai.models import AIModel
from ai_openai.pricing import cost_from_usage, estimate_cost


def priced(name: str, input_price: str, cached: str | None, output: str) -> AIModel:
    return AIModel(
        name=name,
        input_price=Decimal(input_price),
        cached_input_price=Decimal(cached) if cached is not None else None,
        output_price=Decimal(output),
    )


O3 = priced("o3", "2.00", "0.50", "8.00")
O4_MINI = priced("o4-mini", "1.10", "0.275", "4.40")
GPT_41 = priced("gpt-4.1", "2.00", "0.50", "8.00")
GPT_41_MINI = priced("gpt-4.1-mini", "0.40", "0.10", "1.60")
GPT_4O_MINI = priced("gpt-4o-mini", "0.15", "0.075", "0.60")
GPT_4_TURBO = priced("gpt-4-turbo", "10.00", None, "30.00")


@pytest.mark.parametrize(
    ("model", "usage", "expected"),
    [
        # 1000 × 2.00 + 500 × 8.00 = 6000 µ$
        (O3, {"prompt_tokens": 1000, "completion_tokens": 500}, "0.006000"),
        # (10000 - 4000) × 2.00 + 4000 × 0.50 + 2000 × 8.00 = 12000 + 2000 + 16000
        (
            O3,
            {
                "prompt_tokens": 10_000,
                "cached_tokens": 4_000,
                "completion_tokens": 2_000,
                "reasoning_tokens": 1_500,
            },
            "0.030000",
        ),
        # no cached price: 600 × 10 + 400 × 10 + 100 × 30 = 13000
        (
            GPT_4_TURBO,
            {"prompt_tokens": 1000, "cached_tokens": 400, "completion_tokens": 100},
            "0.013000",
        ),
        # 2 × 1.10 + 1 × 0.275 + 1 × 4.40 = 6.875 µ$ → 0.000007 (half up)
        (
            O4_MINI,
            {"prompt_tokens": 3, "cached_tokens": 1, "completion_tokens": 1},
            "0.000007",
        ),
        # 25 × 0.10 = 2.5 µ$ → 0.000003 (ROUND_HALF_UP, not banker's 0.000002)
        (
            GPT_41_MINI,
            {"prompt_tokens": 25, "cached_tokens": 25, "completion_tokens": 0},
            "0.000003",
        ),
        # 1 × 0.15 = 0.15 µ$ → 0.000000
        (GPT_4O_MINI, {"prompt_tokens": 1, "completion_tokens": 0}, "0.000000"),
        # 1,000,000 × 2.00 + 32,768 × 8.00 = 2.000000 + 0.262144
        (GPT_41, {"prompt_tokens": 1_000_000, "completion_tokens": 32_768}, "2.262144"),
        (O3, {"prompt_tokens": 0, "completion_tokens": 0}, "0.000000"),
    ],
)
def test_cost_from_usage_to_the_micro_dollar(model, usage, expected):
    cost = cost_from_usage(model, **usage)
    assert cost == Decimal(expected)
    assert cost.as_tuple().exponent == -6
    assert str(cost) == expected


def test_reasoning_tokens_are_never_added_twice():
    base = {"prompt_tokens": 100, "completion_tokens": 1_000}
    without = cost_from_usage(O3, **base, reasoning_tokens=0)
    with_reasoning = cost_from_usage(O3, **base, reasoning_tokens=900)
    # 100 × 2 + 1000 × 8 = 8200 µ$, whatever part of the completion was reasoning.
    assert without == with_reasoning == Decimal("0.008200")


def test_cached_tokens_bill_at_input_price_when_model_has_no_cached_price():
    all_cached = cost_from_usage(
        GPT_4_TURBO, prompt_tokens=1000, cached_tokens=1000, completion_tokens=0
    )
    none_cached = cost_from_usage(GPT_4_TURBO, prompt_tokens=1000, completion_tokens=0)
    assert all_cached == none_cached == Decimal("0.010000")


def test_cached_tokens_are_capped_at_prompt_tokens():
    assert cost_from_usage(
        O3, prompt_tokens=100, cached_tokens=500, completion_tokens=0
    ) == Decimal("0.000050")


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": -1, "completion_tokens": 0},
        {"prompt_tokens": 1, "completion_tokens": -1},
        {"prompt_tokens": 1, "cached_tokens": -1, "completion_tokens": 0},
        {"prompt_tokens": 1, "completion_tokens": 0, "reasoning_tokens": -1},
    ],
)
def test_negative_counts_are_refused(usage):
    with pytest.raises(ValueError, match="must be >= 0"):
        cost_from_usage(O3, **usage)


@pytest.mark.parametrize(
    ("model", "prompt", "max_output", "expected"),
    [
        # 1234 × 2.00 + 100000 × 8.00 = 2468 + 800000 µ$
        (O3, 1234, 100_000, "0.802468"),
        # 10 × 10.00 + 4096 × 30.00 = 100 + 122880
        (GPT_4_TURBO, 10, 4096, "0.122980"),
        # 7 × 0.15 + 3 × 0.60 = 2.85 µ$ → 0.000003
        (GPT_4O_MINI, 7, 3, "0.000003"),
    ],
)
def test_estimate_cost_is_prompt_at_input_plus_ceiling_at_output(
    model, prompt, max_output, expected
):
    assert estimate_cost(model, prompt_tokens=prompt, max_output_tokens=max_output) == Decimal(
        expected
    )

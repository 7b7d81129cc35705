"""Cost in USD from token counts and the registry's per-1M-token prices.

Pure functions over ``Decimal``; the result is quantized once, to 6 places, ROUND_HALF_UP.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from .models import AIModel

MICRO_USD = Decimal("0.000001")
PER_TOKENS = Decimal(1_000_000)


def _check_non_negative(**counts: int) -> None:
    for name, value in counts.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0")


def _usd(amount_per_million: Decimal) -> Decimal:
    return (amount_per_million / PER_TOKENS).quantize(MICRO_USD, rounding=ROUND_HALF_UP)


def cost_from_usage(
    model: AIModel,
    *,
    prompt_tokens: int,
    cached_tokens: int = 0,
    completion_tokens: int,
    reasoning_tokens: int = 0,
) -> Decimal:
    """The cost of one call from its provider ``usage`` block.

    ``(prompt - cached) × input + cached × cached_input + completion × output``, per 1M
    tokens; cached tokens bill at the input price when the model has no cached price.
    ``reasoning_tokens`` are part of ``completion_tokens`` (that is how the API reports
    them) and are never added again; the argument exists so callers pass the usage block
    as is. ``cached_tokens`` is capped at ``prompt_tokens``. Negative counts raise ValueError.
    """
    _check_non_negative(
        prompt_tokens=prompt_tokens,
        cached_tokens=cached_tokens,
        completion_tokens=completion_tokens,
        reasoning_tokens=reasoning_tokens,
    )
    cached = min(cached_tokens, prompt_tokens)
    cached_price = (
        model.cached_input_price if model.cached_input_price is not None else model.input_price
    )
    total = (
        (prompt_tokens - cached) * Decimal(model.input_price)
        + cached * Decimal(cached_price)
        + completion_tokens * Decimal(model.output_price)
    )
    return _usd(total)


def estimate_cost(model: AIModel, *, prompt_tokens: int, max_output_tokens: int) -> Decimal:
    """Upper-bound cost before a call: no cache hits, every allowed output token used."""
    _check_non_negative(prompt_tokens=prompt_tokens, max_output_tokens=max_output_tokens)
    total = prompt_tokens * Decimal(model.input_price) + max_output_tokens * Decimal(
        model.output_price
    )
    return _usd(total)

"""Exact conversions between the API's decimals and the rollups' integers.

Money is USD with 6 decimals: ``Decimal("0.012345")`` ⇄ ``12345`` micro-dollars.
Execution time is seconds with 3 decimals ⇄ milliseconds. Quality is a 0–10 score with 2
decimals ⇄ hundredths. Every conversion is exact; rounding happens only in the ratios
below, half-up, at the precision of the unit.
"""

from __future__ import annotations

from bisect import bisect_right
from decimal import ROUND_HALF_UP, Decimal

from .models import LATENCY_BUCKET_EDGES_MS

MICRO = Decimal("0.000001")
MILLI = Decimal("0.001")
CENTI = Decimal("0.01")


def to_micros(amount: Decimal) -> int:
    return int((Decimal(amount) * 1_000_000).to_integral_value(rounding=ROUND_HALF_UP))


def to_millis(seconds: Decimal) -> int:
    return int((Decimal(seconds) * 1_000).to_integral_value(rounding=ROUND_HALF_UP))


def to_hundredths(score: Decimal) -> int:
    return int((Decimal(score) * 100).to_integral_value(rounding=ROUND_HALF_UP))


def money(micros: int) -> str:
    """``12345`` → ``"0.012345"``: the API's money format (SPEC §3)."""
    return f"{(Decimal(micros) * MICRO).quantize(MICRO)}"


def money_ratio(micros: int, divisor: int | Decimal) -> str | None:
    """``micros / divisor`` as a money string rounded half-up to the micro-dollar; None
    when the divisor is zero (no data, never a made-up zero)."""
    if not divisor:
        return None
    return f"{(Decimal(micros) * MICRO / Decimal(divisor)).quantize(MICRO, ROUND_HALF_UP)}"


def rounded(value: Decimal, places: int) -> float:
    """A ratio for the API as a JSON number, rounded half-up to ``places`` decimals."""
    return float(value.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP))


def ratio(numerator: int | Decimal, denominator: int | Decimal, places: int) -> float | None:
    if not denominator:
        return None
    return rounded(Decimal(numerator) / Decimal(denominator), places)


def latency_bucket(millis: int) -> int:
    """Index of the histogram bucket ``millis`` falls in (see LATENCY_BUCKET_EDGES_MS)."""
    return bisect_right(LATENCY_BUCKET_EDGES_MS, millis)

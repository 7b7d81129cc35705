"""Serializer helpers shared by the apps."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from rest_framework import serializers


class DecimalField(serializers.DecimalField):
    """DRF's, with ``-0`` (``"-0.0"``, ``-0.0``) taken as 0: stored and shown as
    ``0.000000``, never ``-0.000000``."""

    def to_internal_value(self, data: Any) -> Decimal:
        value = super().to_internal_value(data)
        return abs(value) if value == 0 else value


# A write serializer that refuses keys it does not know (DRF drops them silently, so
# ``{"daily_budjet": 5}`` answered 200 and changed nothing). Each unknown key is a field
# error naming the closest known field. ``also_known``: the names of the resource as the
# API shows it (ids, masked keys, timestamps), accepted and ignored, so a body read back
# from the API and sent again (a PUT after a GET) still passes.
# (A comment, not a docstring: drf-spectacular would show it on every request schema.)
class RejectUnknownFieldsMixin:
    also_known: ClassVar[tuple[str, ...]] = ()

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = list(self.fields)  # type: ignore[attr-defined]
            unknown = [key for key in data if key not in known and key not in self.also_known]
            if unknown:
                raise serializers.ValidationError(
                    {key: [_unknown_message(str(key), known)] for key in unknown}
                )
        return super().to_internal_value(data)  # type: ignore[misc]


def _unknown_message(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"Unknown field.{hint} Known fields: {', '.join(known)}."


class ScoreField(serializers.FloatField):
    """A number (or a numeric string) between 0 and 1; ``true``/``false`` are refused (DRF's
    ``FloatField`` read ``true`` as 1.0)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 0.0)
        kwargs.setdefault("max_value", 1.0)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class TextField(serializers.CharField):
    """A JSON string: a number is refused (DRF's ``CharField`` turned 123 into "123")."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """JSON ``true`` or ``false`` only (DRF's ``BooleanField`` also read "yes", "on", 1)."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data

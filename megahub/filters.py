"""Filter backends shared by every list."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField
from rest_framework.filters import OrderingFilter

from .errors import ValidationFailed


class StrictOrderingFilter(OrderingFilter):
    """``?ordering=`` as DRF's, except that a field the list cannot be ordered by is a 400
    naming the fields it can, on lists (DRF drops such a term silently, so a typo such as
    ``?ordering=-cost`` returned the default order as if it had been applied)."""

    def remove_invalid_fields(
        self, queryset: Any, fields: list[str], view: Any, request: Any
    ) -> list[str]:
        lookup = getattr(view, "lookup_url_kwarg", None) or getattr(view, "lookup_field", None)
        if lookup and lookup in getattr(view, "kwargs", {}):
            # One object (``get_object`` filters its queryset too): ordering means nothing.
            return super().remove_invalid_fields(queryset, fields, view, request)
        valid = [item[0] for item in self.get_valid_fields(queryset, view, {"request": request})]
        terms = [term for term in fields if term]
        invalid = [term for term in terms if term.removeprefix("-") not in valid]
        if invalid:
            raise ValidationFailed(
                f"Cannot order by {', '.join(invalid)}.",
                field_errors={
                    self.ordering_param: [
                        f"Unknown ordering field: {term!r}. Valid fields: {', '.join(valid)}"
                        " (prefix '-' for descending)."
                        for term in invalid
                    ]
                },
                suggestions=valid,
            )
        return terms

    def filter_queryset(self, request: Any, queryset: Any, view: Any) -> Any:
        """As DRF's, except that a field the view names in ``ordering_expressions`` is
        ordered by that expression (a choice field by its rank, not alphabetically)."""
        ordering = self.get_ordering(request, queryset, view)
        if not ordering:
            return queryset
        expressions = getattr(view, "ordering_expressions", {})
        terms = []
        for term in ordering:
            name = term.removeprefix("-")
            if name in expressions:
                expression = expressions[name]
                term = expression.desc() if term.startswith("-") else expression.asc()
            terms.append(term)
        return queryset.order_by(*terms)


def rank_of(field: str, values: list[str]) -> Any:
    """An expression ranking ``field`` by the position of its value in ``values``."""
    from django.db.models import Case, IntegerField, Value, When

    return Case(
        *(When(**{field: value}, then=Value(rank)) for rank, value in enumerate(values)),
        default=Value(len(values)),
        output_field=IntegerField(),
    )


class BoundedIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time that exists in UTC: ``0001-01-01T00:00:00+01:00`` parses but
    is a year before 1 in UTC, which the database adapter cannot convert (it raised
    ``OverflowError`` when the list was read: a 500, or an export cut short)."""

    default_error_messages = {
        "out_of_range": "Out of range: the date-time must lie between 0001-01-01 and "
        "9999-12-31 in UTC.",
    }

    def to_python(self, value: Any) -> datetime | None:
        result = super().to_python(value)
        if result is not None:
            try:
                result.astimezone(UTC)
            except OverflowError:
                raise ValidationError(
                    self.error_messages["out_of_range"], code="out_of_range"
                ) from None
        return result


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = BoundedIsoDateTimeField


class StrictNullBooleanField(forms.NullBooleanField):
    """``true``/``false`` (or ``1``/``0``, any case); absent or empty: no filter; anything
    else an error (Django's field reads ``maybe`` as "no filter" and lists everything)."""

    widget = forms.TextInput  # the raw value, not NullBooleanSelect's reading of it
    TRUE = frozenset({"true", "1"})
    FALSE = frozenset({"false", "0"})

    def to_python(self, value: Any) -> bool | None:
        if value is None or value == "" or isinstance(value, bool):
            return value if isinstance(value, bool) else None
        text = str(value).strip().lower()
        if text in self.TRUE:
            return True
        if text in self.FALSE:
            return False
        raise ValidationError("Must be true or false.", code="invalid")

    def validate(self, value: Any) -> None:
        return None


class BooleanFilter(django_filters.BooleanFilter):
    field_class = StrictNullBooleanField

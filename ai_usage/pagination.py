"""The usage list's pagination: an unfiltered list is counted from the rollups.

``COUNT(*)`` over a brand's usage rows grows with its history (hundreds of milliseconds at a
million rows). The rollups hold the same number, exactly (they change in the transaction
that writes each row), in a few thousand rows, so the unfiltered list asks them instead.
"""

from __future__ import annotations

from functools import cached_property, partial
from typing import Any

from django.core.paginator import Paginator

from megahub.pagination import StandardPagination


class KnownCountPaginator(Paginator):
    def __init__(self, *args: Any, known_count: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.known_count = known_count

    @cached_property
    def count(self) -> int:
        if self.known_count is not None:
            return self.known_count
        return super().count


class UsagePagination(StandardPagination):
    """``StandardPagination`` that takes the count from ``view.known_count(request)`` when
    the view can tell it (None: count the rows)."""

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> Any:
        known = view.known_count(request) if hasattr(view, "known_count") else None
        self.django_paginator_class = partial(KnownCountPaginator, known_count=known)
        return super().paginate_queryset(queryset, request, view)

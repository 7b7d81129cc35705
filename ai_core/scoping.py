"""Brand scoping that later apps inherit instead of remembering.

- ``BrandScopedViewSetMixin``: every queryset filtered by ``request.current_brand``,
  every create stamped with it. A row of another brand is then simply absent: 404.
- ``BrandScopedPrimaryKeyRelatedField`` / ``BrandScopedSlugRelatedField``: related-object
  inputs validated against the current brand's rows only, so another brand's id gets the
  same "does not exist" error as a missing id.
- ``brand_queryset``: the callable queryset for django-filter's ``ModelChoiceFilter`` and
  ``ModelMultipleChoiceFilter``, for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import Model, QuerySet
from django.http import HttpRequest
from rest_framework import serializers
from rest_framework.request import Request

from .models import Brand


def request_brand(request: HttpRequest | Request | None) -> Brand | None:
    return getattr(request, "current_brand", None) if request is not None else None


class BrandScopedViewSetMixin:
    """Filter by the current brand; ``brand_field`` names the path to it (default ``brand``).

    Put it first in the bases so its ``get_queryset`` wraps the viewset's own.
    """

    brand_field: str = "brand"
    request: Request

    def get_queryset(self) -> QuerySet[Any]:
        queryset = super().get_queryset()  # type: ignore[misc]
        brand = request_brand(self.request)
        if brand is None:
            # Schema generation and unauthenticated paths: never an unscoped list.
            return queryset.none()
        return queryset.filter(**{self.brand_field: brand})

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        serializer.save(**{self.brand_field: self.request.current_brand})


class _BrandScopedRelatedMixin:
    brand_field: str = "brand"

    def __init__(self, *args: Any, brand_field: str = "brand", **kwargs: Any) -> None:
        self.brand_field = brand_field
        super().__init__(*args, **kwargs)

    def get_queryset(self) -> QuerySet[Any]:
        queryset = super().get_queryset()  # type: ignore[misc]
        brand = request_brand(self.context.get("request"))  # type: ignore[attr-defined]
        if brand is None:
            return queryset.none()
        return queryset.filter(**{self.brand_field: brand})


class BrandScopedPrimaryKeyRelatedField(
    _BrandScopedRelatedMixin, serializers.PrimaryKeyRelatedField
):
    pass


class BrandScopedSlugRelatedField(_BrandScopedRelatedMixin, serializers.SlugRelatedField):
    pass


def brand_queryset(
    model: type[Model], brand_field: str = "brand"
) -> Callable[[HttpRequest | None], QuerySet[Any]]:
    """A django-filter ``queryset=`` callable limited to the request's brand."""

    def scoped(request: HttpRequest | None) -> QuerySet[Any]:
        brand = request_brand(request)
        if brand is None:
            return model._default_manager.none()
        return model._default_manager.filter(**{brand_field: brand})

    return scoped

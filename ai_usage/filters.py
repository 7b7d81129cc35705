from typing import Any

import django_filters

from ai_core.filters import GENERATION_CHOICES
from megahub.filters import BooleanFilter, IsoDateTimeFilter, StrictOrderingFilter

from .models import UsageAlert, UsageRecord

# ai_providers' ``Provider.Code`` (ai_usage cannot import it); kept equal to it by
# tests/openai/test_list_filters.py.
PROVIDER_CHOICES = [
    ("openai", "OpenAI"),
    ("azure_openai", "Azure OpenAI"),
    ("anthropic", "Anthropic"),
    ("google", "Google"),
]


class CommaListFilter(django_filters.BaseInFilter, django_filters.CharFilter):
    """``?model_name__in=o3,gpt-4o``."""


class UsageFilter(django_filters.FilterSet):
    created_at__gte = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_at__lte = IsoDateTimeFilter(field_name="created_at", lookup_expr="lte")
    total_cost__gte = django_filters.NumberFilter(field_name="total_cost", lookup_expr="gte")
    total_cost__lte = django_filters.NumberFilter(field_name="total_cost", lookup_expr="lte")
    model_name = django_filters.CharFilter(field_name="model_name")
    model_name__in = CommaListFilter(field_name="model_name", lookup_expr="in")
    # An unknown generation or provider is a 400 naming the parameter, as on the jobs lists.
    generation = django_filters.ChoiceFilter(field_name="generation", choices=GENERATION_CHOICES)
    provider = django_filters.ChoiceFilter(field_name="provider", choices=PROVIDER_CHOICES)
    job_type = django_filters.CharFilter(field_name="job_type")
    quality_score__gte = django_filters.NumberFilter(field_name="quality_score", lookup_expr="gte")
    cost_efficiency__gte = django_filters.NumberFilter(
        field_name="cost_efficiency", lookup_expr="gte"
    )
    is_cached = BooleanFilter(field_name="is_cached")

    class Meta:
        model = UsageRecord
        fields: list[str] = []


class AlertFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=UsageAlert.Kind.choices)
    threshold = django_filters.NumberFilter(field_name="threshold")
    period = django_filters.CharFilter(field_name="period")
    acknowledged = BooleanFilter(field_name="acknowledged_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = UsageAlert
        fields: list[str] = []


class StableOrderingFilter(StrictOrderingFilter):
    """``?ordering=`` with the job id as the last key, so rows that tie on the requested
    field (equal costs, null scores) keep one order across pages and exports."""

    def get_ordering(self, request: Any, queryset: Any, view: Any) -> list[str]:
        ordering = list(super().get_ordering(request, queryset, view) or [])
        if not any(field.lstrip("-") in ("job", "job_id", "pk") for field in ordering):
            ordering.append("-job_id")
        return ordering

import django_filters

from ai_providers.models import Provider

from .models import AIModel, OpenAIJob
from .validation import REASONING_EFFORTS


class OpenAIJobFilter(django_filters.FilterSet):
    model = django_filters.CharFilter()
    generation = django_filters.ChoiceFilter(choices=AIModel.Generation.choices)
    reasoning_effort = django_filters.ChoiceFilter(
        choices=[(effort, effort.title()) for effort in REASONING_EFFORTS]
    )
    provider = django_filters.ChoiceFilter(choices=Provider.Code.choices)
    cost_usd__gte = django_filters.NumberFilter(field_name="cost_usd", lookup_expr="gte")
    cost_usd__lte = django_filters.NumberFilter(field_name="cost_usd", lookup_expr="lte")
    # Feedback scores live on the job's usage record (ai_usage), reached through the job.
    quality_score__gte = django_filters.NumberFilter(
        field_name="job__usage__quality_score", lookup_expr="gte"
    )

    class Meta:
        model = OpenAIJob
        fields = ["model", "generation", "reasoning_effort", "provider"]

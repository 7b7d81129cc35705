import django_filters

from .models import AIJob, JobPriority, JobStatus


class JobFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=JobStatus.choices)
    priority = django_filters.MultipleChoiceFilter(choices=JobPriority.choices)
    job_type = django_filters.CharFilter(field_name="job_type__code")
    model = django_filters.CharFilter(field_name="model")
    created_at__gte = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_at__lte = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lte")
    # Across relations owned by apps above ai_core, reached through the ORM's reverse
    # relations (never an import): ai_openai's OpenAIJob is ``job.openai_job``.
    openai_job__model = django_filters.CharFilter(field_name="openai_job__model")
    openai_job__generation = django_filters.CharFilter(field_name="openai_job__generation")
    openai_job__reasoning_effort = django_filters.CharFilter(
        field_name="openai_job__reasoning_effort"
    )
    # ai_usage's UsageRecord is ``job.usage``.
    usage__execution_time_seconds__gte = django_filters.NumberFilter(
        field_name="usage__execution_time_seconds", lookup_expr="gte"
    )
    usage__total_cost__gte = django_filters.NumberFilter(
        field_name="usage__total_cost", lookup_expr="gte"
    )

    class Meta:
        model = AIJob
        fields = ["status", "priority", "job_type", "model"]

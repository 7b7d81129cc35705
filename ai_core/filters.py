import django_filters

from megahub.filters import IsoDateTimeFilter

from .models import AIJob, JobPriority, JobStatus

# The closed value sets of ai_openai's ``OpenAIJob.generation`` and ``reasoning_effort``,
# named here because ai_core cannot import the app that owns them (ai_usage reuses them
# for its own ``generation``). tests/openai/test_list_filters.py keeps them equal to
# ``AIModel.Generation`` and ``validation.REASONING_EFFORTS``.
GENERATION_CHOICES = [("new", "New"), ("legacy", "Legacy")]
REASONING_EFFORT_CHOICES = [("low", "Low"), ("medium", "Medium"), ("high", "High")]


class JobFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=JobStatus.choices)
    priority = django_filters.MultipleChoiceFilter(choices=JobPriority.choices)
    job_type = django_filters.CharFilter(field_name="job_type__code")
    model = django_filters.CharFilter(field_name="model")
    created_at__gte = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_at__lte = IsoDateTimeFilter(field_name="created_at", lookup_expr="lte")
    # Across relations owned by apps above ai_core, reached through the ORM's reverse
    # relations (never an import): ai_openai's OpenAIJob is ``job.openai_job``.
    openai_job__model = django_filters.CharFilter(field_name="openai_job__model")
    # Choice filters: an unknown value is a 400 naming the parameter, not an empty page.
    openai_job__generation = django_filters.ChoiceFilter(
        field_name="openai_job__generation", choices=GENERATION_CHOICES
    )
    openai_job__reasoning_effort = django_filters.ChoiceFilter(
        field_name="openai_job__reasoning_effort", choices=REASONING_EFFORT_CHOICES
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

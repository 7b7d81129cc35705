from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings

from megahub.serializers import RejectUnknownFieldsMixin

from .models import AIJob, AIJobType, Brand, BrandMembership, JobAttempt, JobPriority
from .services.jobs import BATCH_MAX_JOBS, PRIORITY_ERROR, batch_item_field


class BrandSerializer(serializers.ModelSerializer):
    class Meta:
        model = Brand
        fields = ["id", "slug", "name"]


class MembershipBrandSerializer(serializers.ModelSerializer):
    brand = BrandSerializer()

    class Meta:
        model = BrandMembership
        fields = ["brand", "role"]


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    brand = BrandSerializer()
    role = serializers.CharField()
    memberships = MembershipBrandSerializer(many=True)


class JobTypeSerializer(serializers.ModelSerializer):
    category = serializers.SlugRelatedField(slug_field="code", read_only=True)
    category_name = serializers.CharField(source="category.name", read_only=True)

    class Meta:
        model = AIJobType
        fields = [
            "code",
            "name",
            "description",
            "category",
            "category_name",
            "default_model",
            "requires_reasoning",
        ]


class JobAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobAttempt
        fields = [
            "number",
            "provider",
            "model",
            "role",
            "outcome",
            "error_class",
            "status_code",
            "latency_ms",
            "retry_after",
            "error_message",
            "created_at",
        ]


class JobSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    job_type = serializers.SlugRelatedField(slug_field="code", read_only=True)
    usage = serializers.SerializerMethodField()

    class Meta:
        model = AIJob
        fields = [
            "id",
            "job_type",
            "priority",
            "status",
            "progress",
            "model",
            "input",
            "result",
            "error",
            "metadata",
            "attempts_count",
            "total_retries",
            "fallback_used",
            "duration_ms",
            "created_at",
            "queued_at",
            "started_at",
            "retrying_at",
            "completed_at",
            "failed_at",
            "cancelled_at",
            "status_history",
            "usage",
        ]
        read_only_fields = fields

    def get_usage(self, job: AIJob) -> Any:
        # ai_usage's record, through the reverse relation ``job.usage`` (never an import).
        record = getattr(job, "usage", None)
        if record is None:
            return None
        return {
            "provider": record.provider,
            "model": record.model_name,
            "prompt_tokens": record.prompt_tokens,
            "cached_tokens": record.cached_tokens,
            "completion_tokens": record.completion_tokens,
            "reasoning_tokens": record.reasoning_tokens,
            "total_tokens": record.total_tokens,
            "total_cost": f"{record.total_cost:.6f}",
            "execution_time_seconds": f"{record.execution_time_seconds:.3f}",
            "quality_score": None if record.quality_score is None else str(record.quality_score),
        }


class JobDetailSerializer(JobSerializer):
    attempts = JobAttemptSerializer(many=True, read_only=True)

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "attempts"]
        read_only_fields = fields


class JobCreateSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """A new job. A field it does not know is refused, not dropped: a model parameter put
    beside ``input`` instead of in it (``temperature`` on o3, say) would otherwise be
    ignored without a word."""

    # Not trimmed: "chat_completion " is not a job type, as on POST /ai/openai/chat/.
    job_type = serializers.CharField(max_length=64, trim_whitespace=False)
    priority = serializers.ChoiceField(
        choices=JobPriority.values,
        default=JobPriority.NORMAL,
        error_messages={"invalid_choice": PRIORITY_ERROR},
    )
    input = serializers.DictField(child=serializers.JSONField(), allow_empty=True, default=dict)
    model = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")


@extend_schema_field(JobCreateSerializer(many=True))  # what each item is checked against
class JobBatchItemsField(serializers.ListField):
    """The items of a batch: any JSON values here, each validated by
    ``JobCreateSerializer`` in ``JobBatchCreateSerializer.validate``, so an error names
    its item (``jobs[2].priority``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            child=serializers.JSONField(allow_null=True),
            allow_empty=False,
            max_length=BATCH_MAX_JOBS,
            **kwargs,
        )


class JobBatchCreateSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """``{"jobs": [<a POST /ai/jobs/ body>, ...]}``: 1 to 100 jobs, created all or none."""

    jobs = JobBatchItemsField(
        error_messages={"max_length": f"Give at most {BATCH_MAX_JOBS} jobs."},
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        items: list[dict[str, Any]] = []
        errors: dict[str, list[str]] = {}
        for index, item in enumerate(attrs["jobs"]):
            serializer = JobCreateSerializer(data=item)
            if serializer.is_valid():
                items.append(dict(serializer.validated_data))
            else:
                _name_errors(errors, batch_item_field(index), serializer.errors)
        if errors:
            raise serializers.ValidationError(errors)
        return {"jobs": items}


def _name_errors(named: dict[str, list[str]], prefix: str, errors: Any) -> None:
    """Add ``errors`` (a serializer's, possibly nested) to ``named`` under keys that
    extend ``prefix``: ``jobs[2].priority``; errors of the whole item under ``jobs[2]``."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            whole = key == api_settings.NON_FIELD_ERRORS_KEY
            _name_errors(named, prefix if whole else f"{prefix}.{key}", value)
    elif isinstance(errors, list):
        for value in errors:
            _name_errors(named, prefix, value)
    else:
        named.setdefault(prefix, []).append(str(errors))


class JobBatchSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    results = JobSerializer(many=True)


def _money_field() -> serializers.DecimalField:
    # SPEC §3: money is a decimal string with 6 decimals, never a float.
    return serializers.DecimalField(max_digits=20, decimal_places=6, coerce_to_string=True)


class JobsDashboardPeriodSerializer(serializers.Serializer):
    days = serializers.IntegerField()
    since = serializers.CharField(help_text="ISO 8601: jobs created from then on count.")


class JobsDashboardDurationSerializer(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)


class JobsDashboardCostSerializer(serializers.Serializer):
    total = _money_field()
    by_type = serializers.DictField(child=_money_field())
    by_model = serializers.DictField(child=_money_field())


class JobsDashboardSerializer(serializers.Serializer):
    """``GET /ai/jobs/dashboard/``: the brand's jobs created in the period."""

    period = JobsDashboardPeriodSerializer()
    total_jobs = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())
    by_type = serializers.DictField(child=serializers.IntegerField())
    by_model = serializers.DictField(child=serializers.IntegerField())
    success_rate = serializers.FloatField(allow_null=True, help_text="completed / finished")
    duration_ms = JobsDashboardDurationSerializer(help_text="Of completed jobs.")
    cost = JobsDashboardCostSerializer(help_text="USD, of the jobs' usage records.")

from typing import Any

from rest_framework import serializers

from .models import AIJob, AIJobType, Brand, BrandMembership, JobAttempt, JobPriority
from .services.jobs import PRIORITY_ERROR


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


class JobCreateSerializer(serializers.Serializer):
    job_type = serializers.CharField(max_length=64)
    priority = serializers.ChoiceField(
        choices=JobPriority.values,
        default=JobPriority.NORMAL,
        error_messages={"invalid_choice": PRIORITY_ERROR},
    )
    input = serializers.DictField(child=serializers.JSONField(), allow_empty=True, default=dict)
    model = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")

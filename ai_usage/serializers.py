from typing import Any

from rest_framework import serializers

from megahub.serializers import DecimalField, RejectUnknownFieldsMixin

from .models import UsageAlert, UsageFeedback, UsageRecord
from .selectors import BREAKDOWN_FIELDS

MAX_MODELS = 50


class UsageRecordSerializer(serializers.ModelSerializer):
    job_id = serializers.CharField(source="job_public_id", read_only=True)

    class Meta:
        model = UsageRecord
        fields = [
            "job_id",
            "created_at",
            "provider",
            "model_name",
            "generation",
            "job_type",
            "prompt_tokens",
            "cached_tokens",
            "completion_tokens",
            "reasoning_tokens",
            "total_tokens",
            "total_cost",
            "execution_time_seconds",
            "quality_score",
            "cost_efficiency",
            "is_cached",
        ]
        read_only_fields = fields


class ModelListField(serializers.CharField):
    """A comma-separated list of model names (``o3,o3-mini,gpt-4o``), deduplicated."""

    def to_internal_value(self, data: Any) -> list[str]:
        text = super().to_internal_value(data)
        names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
        if not names:
            raise serializers.ValidationError("Give at least one model name.")
        if len(names) > MAX_MODELS:
            raise serializers.ValidationError(f"At most {MAX_MODELS} models.")
        if any(len(name) > 64 for name in names):
            raise serializers.ValidationError("Model names are at most 64 characters.")
        return names


class PeriodQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=366, default=30)


class DashboardQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=366, default=7)


class ModelsQuerySerializer(PeriodQuerySerializer):
    models = ModelListField(required=False, max_length=2000)


class CostBreakdownQuerySerializer(PeriodQuerySerializer):
    model = ModelListField(required=False, max_length=2000)
    group_by = serializers.ChoiceField(choices=list(BREAKDOWN_FIELDS), default="model")


class TrendsQuerySerializer(PeriodQuerySerializer):
    interval = serializers.ChoiceField(choices=["day", "week"], default="day")
    model = ModelListField(required=False, max_length=2000)


class ExportQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=["csv", "xlsx"], default="csv")


class FeedbackSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    score = DecimalField(max_digits=4, decimal_places=2, min_value=0, max_value=10)
    comment = serializers.CharField(max_length=2000, allow_blank=True, required=False, default="")


class FeedbackResultSerializer(serializers.Serializer):
    """The stored feedback and what it changed on the usage record."""

    job_id = serializers.CharField()
    score = serializers.DecimalField(max_digits=4, decimal_places=2)
    comment = serializers.CharField()
    quality_score = serializers.DecimalField(max_digits=4, decimal_places=2)
    cost_efficiency = serializers.DecimalField(max_digits=16, decimal_places=4, allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @staticmethod
    def build(feedback: UsageFeedback, record: UsageRecord) -> dict[str, Any]:
        return {
            "job_id": feedback.job.public_id,
            "score": feedback.score,
            "comment": feedback.comment,
            "quality_score": record.quality_score,
            "cost_efficiency": record.cost_efficiency,
            "created_at": feedback.created_at,
            "updated_at": feedback.updated_at,
        }


class UsageAlertSerializer(serializers.ModelSerializer):
    acknowledged_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    acknowledged = serializers.SerializerMethodField()

    class Meta:
        model = UsageAlert
        fields = [
            "id",
            "kind",
            "threshold",
            "period",
            "value",
            "limit",
            "message",
            "created_at",
            "acknowledged",
            "acknowledged_at",
            "acknowledged_by",
        ]
        read_only_fields = fields

    def get_acknowledged(self, alert: UsageAlert) -> bool:
        return alert.acknowledged_at is not None

    def to_representation(self, alert: UsageAlert) -> dict[str, Any]:
        data = super().to_representation(alert)
        data["value"], data["limit"] = alert.amounts()
        return data

from typing import Any

from rest_framework import serializers

from megahub.serializers import ScoreField, TextField

from .models import AIModel, OpenAIJob
from .registry import ai_model_is_available
from .validation import model_requirements, suggested_params


class AIModelSerializer(serializers.ModelSerializer):
    available = serializers.SerializerMethodField()
    prices_per_million = serializers.SerializerMethodField()
    rules = serializers.SerializerMethodField()

    class Meta:
        model = AIModel
        fields = [
            "name",
            "provider_family",
            "generation",
            "kind",
            "context_window",
            "max_output_tokens",
            "tokenizer",
            "prices_per_million",
            "rules",
            "defaults",
            "performance_profile",
            "is_o3_family",
            "enabled",
            "available",
        ]

    def get_available(self, model: AIModel) -> bool:
        return ai_model_is_available(model)

    def get_prices_per_million(self, model: AIModel) -> dict[str, str | None]:
        cached = model.cached_input_price
        return {
            "input": f"{model.input_price:.6f}",
            "cached_input": f"{cached:.6f}" if cached is not None else None,
            "output": f"{model.output_price:.6f}",
        }

    def get_rules(self, model: AIModel) -> dict[str, Any]:
        return {
            **model_requirements(model),
            "suggested_params": suggested_params(model),
            "output_limit_param": model.output_limit_param,
            "content_format": model.content_format,
        }


class OpenAIJobSerializer(serializers.ModelSerializer):
    job_id = serializers.CharField(source="job.public_id")
    status = serializers.CharField(source="job.status")
    job_type = serializers.CharField(source="job.job_type.code")

    class Meta:
        model = OpenAIJob
        fields = [
            "job_id",
            "status",
            "job_type",
            "model",
            "generation",
            "kind",
            "reasoning_effort",
            "provider",
            "prompt_tokens",
            "cached_tokens",
            "completion_tokens",
            "reasoning_tokens",
            "total_tokens",
            "cost_usd",
            "execution_time_seconds",
            "finish_reason",
            "applied_config",
            "fallback_used",
            "created_at",
        ]


class JobResultQuerySerializer(serializers.Serializer):
    job_id = serializers.CharField(max_length=40)


class RecommendRequestSerializer(serializers.Serializer):
    task_description = TextField(max_length=20_000)
    complexity_score = ScoreField()
    budget_constraint = ScoreField(default=0.5)
    quality_requirement = ScoreField(default=0.5)

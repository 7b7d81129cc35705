import math
from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from ai_core.idempotency import idempotent_response
from ai_core.models import AIJob, JobAttempt, JobStatus
from ai_core.scoping import BrandScopedViewSetMixin
from ai_core.selectors import job_get
from megahub.errors import ApplicationError, ValidationFailed

from .filters import OpenAIJobFilter
from .models import OpenAIJob
from .recommendation import recommend_model
from .registry import ai_model_list
from .serializers import (
    AIModelSerializer,
    JobResultQuerySerializer,
    OpenAIJobSerializer,
    RecommendRequestSerializer,
)
from .services import chat_submit

# The HTTP status of a failed chat, by the error code the job recorded.
STATUS_BY_ERROR_CODE = {
    "PROVIDER_TIMEOUT": 504,
    "JOB_TIME_LIMIT": 504,
    "RATE_LIMITED": 429,
    "PROVIDER_ERROR": 502,
    "PROVIDER_BAD_REQUEST": 400,
    "INTERNAL_ERROR": 500,
}


def job_error(job: AIJob) -> ApplicationError:
    if job.status == JobStatus.CANCELLED:
        return ApplicationError(
            "The job was cancelled while it ran; a provider call that had already finished "
            "is still recorded in usage and budgets.",
            error_code="JOB_CANCELLED",
            status_code=409,
            job_id=job.public_id,
        )
    error = dict(job.error or {})
    code = error.pop("error_code", "PROVIDER_ERROR")
    headers = {}
    if code == "RATE_LIMITED":
        seconds = rate_limited_retry_after(job)
        headers["Retry-After"] = str(seconds)
        error["retry_after"] = seconds
    return ApplicationError(
        error.pop("detail", "The job failed."),
        error_code=code,
        status_code=STATUS_BY_ERROR_CODE.get(code, 502),
        field_errors=error.pop("field_errors", None),
        suggestions=error.pop("suggestions", None),
        headers=headers,
        job_id=job.public_id,
        **error,
    )


def rate_limited_retry_after(job: AIJob) -> int:
    """Whole seconds (rounded up, at least 1) a client should wait before repeating a job
    that ended rate-limited by the provider: the ``Retry-After`` of the 429 that ended it
    (the job's last failed attempt), else ``AI_RATE_LIMIT_REQUEUE_DELAY`` — the same delay
    an async job ending so is re-queued with. One query, on this error path only."""
    last = (
        JobAttempt.objects.filter(job=job, outcome=JobAttempt.Outcome.ERROR)
        .order_by("-number")
        .values_list("retry_after", flat=True)
        .first()
    )
    delay = last if last is not None else settings.AI_RATE_LIMIT_REQUEUE_DELAY
    return max(1, math.ceil(delay))


def async_accepted(job: AIJob) -> dict[str, Any]:
    return {
        "job_id": job.public_id,
        "status": job.status,
        "status_url": f"/ai/jobs/{job.public_id}/",
        "result_url": f"/ai/openai/completion/job_result/?job_id={job.public_id}",
    }


class ChatApi(APIView):
    """GET: the models with their rules, prices and profile. POST: a chat completion."""

    # The project's list pagination (SPEC §5) for GET; the schema reads it from here too.
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(responses=AIModelSerializer(many=True))
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(ai_model_list(), request, view=self)
        return paginator.get_paginated_response(AIModelSerializer(page, many=True).data)

    @extend_schema(
        request=OpenApiTypes.OBJECT, responses={200: OpenApiTypes.OBJECT, 202: OpenApiTypes.OBJECT}
    )
    def post(self, request: Request) -> Response:
        body = request.data
        if not isinstance(body, dict):
            raise ValidationFailed("The request body must be a JSON object.")
        run_async = body.get("async")
        if run_async is None:  # absent, or null: not given
            run_async = False
        if not isinstance(run_async, bool):
            raise ValidationFailed(field_errors={"async": ["Must be true or false."]})
        if body.get("stream") not in (None, False):
            # Not silently answered in one piece: streaming is the gateway's.
            raise ValidationFailed(
                "This endpoint does not stream.",
                field_errors={
                    "stream": [
                        "Not supported here: stream through POST /ai/v1/chat/completions "
                        "(with an API key), or use async: true."
                    ]
                },
                suggestions=["POST /ai/v1/chat/completions", "async: true"],
            )

        def run() -> Response:
            job = chat_submit(
                brand=request.current_brand, user=request.user, body=body, run_now=not run_async
            )
            if run_async:
                return Response(async_accepted(job), status=202)
            if job.status != JobStatus.COMPLETED:
                raise job_error(job)
            return Response(job.result)

        return idempotent_response(
            request=request, brand=request.current_brand, scope="openai.chat", run=run
        )


class OpenAIJobViewSet(BrandScopedViewSetMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """Chat jobs of the current brand with their model, tokens and cost."""

    queryset = OpenAIJob.objects.select_related("job", "job__job_type")
    serializer_class = OpenAIJobSerializer
    filterset_class = OpenAIJobFilter
    search_fields = ["job__public_id", "model"]
    ordering_fields = ["created_at", "cost_usd", "execution_time_seconds", "total_tokens"]
    ordering = ["-created_at"]


class JobResultApi(APIView):
    """The result of a job: 200 when finished (completed, failed or cancelled), 202 with
    the status while it is not."""

    @extend_schema(
        parameters=[OpenApiParameter("job_id", OpenApiTypes.STR, required=True)],
        responses={200: OpenApiTypes.OBJECT, 202: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request) -> Response:
        query = JobResultQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        job = job_get(brand=request.current_brand, public_id=query.validated_data["job_id"])
        if not job.is_terminal:
            return Response(
                {"job_id": job.public_id, "status": job.status, "progress": job.progress},
                status=202,
            )
        if job.status == JobStatus.COMPLETED:
            result = {"job_id": job.public_id, "status": job.status, **(job.result or {})}
            usage = getattr(job, "usage", None)
            if usage is not None and usage.quality_score is not None:
                # Measured, not invented: the score the client gave with POST …/feedback/.
                result["quality_indicators"] = {
                    **result.get("quality_indicators", {}),
                    "feedback_score": str(usage.quality_score),
                }
            return Response(result)
        return Response({"job_id": job.public_id, "status": job.status, "error": job.error})


class RecommendModelApi(APIView):
    """Deterministic model recommendation for a task (see ai_openai/recommendation.py)."""

    @extend_schema(request=RecommendRequestSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request) -> Response:
        serializer = RecommendRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(recommend_model(brand=request.current_brand, **serializer.validated_data))

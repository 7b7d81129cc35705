from datetime import timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from megahub.filters import rank_of

from .errors import JobNotFound
from .filters import JobFilter
from .idempotency import idempotent_response
from .models import AIJob, JobPriority, JobStatus
from .scoping import BrandScopedViewSetMixin
from .selectors import job_types_active, jobs_dashboard, jobs_get_many, user_memberships
from .serializers import (
    JobBatchCreateSerializer,
    JobBatchSerializer,
    JobCreateSerializer,
    JobDetailSerializer,
    JobsDashboardSerializer,
    JobSerializer,
    JobTypeSerializer,
    MeSerializer,
)
from .services import ai_job_cancel, ai_job_create, ai_jobs_create_batch


class MeApi(APIView):
    """Who the caller is, which brand this request acts for, and their other brands."""

    @extend_schema(responses=MeSerializer)
    def get(self, request: Request) -> Response:
        membership = request._request.brand_membership
        data = {
            "username": request.user.get_username(),
            "brand": membership.brand,
            "role": membership.role,
            "memberships": user_memberships(user=request.user),
        }
        return Response(MeSerializer(data).data)


class DashboardQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=366, default=30)


class JobViewSet(
    BrandScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """AI jobs of the current brand. ``{id}`` is the public id (``ai_job_<hex>``)."""

    queryset = AIJob.objects.select_related("job_type", "usage")
    serializer_class = JobSerializer
    lookup_field = "public_id"
    lookup_url_kwarg = "id"
    lookup_value_regex = "[^/]+"
    filterset_class = JobFilter
    search_fields = ["public_id", "job_type__code", "model"]
    ordering_fields = ["created_at", "priority", "status", "duration_ms", "completed_at"]
    ordering = ["-created_at", "-id"]
    # Priority by importance (low < normal < high < urgent), status along the workflow
    # (pending … completed, failed, cancelled): not alphabetically.
    ordering_expressions = {
        "priority": rank_of("priority", list(JobPriority.values)),
        "status": rank_of("status", list(JobStatus.values)),
    }

    def get_queryset(self) -> QuerySet[AIJob]:
        queryset = super().get_queryset()
        if self.action == "retrieve":
            queryset = queryset.prefetch_related("attempts")
        return queryset

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        if self.action == "retrieve":
            return JobDetailSerializer
        if self.action == "create":
            return JobCreateSerializer
        return JobSerializer

    def get_object(self) -> AIJob:
        job = self.get_queryset().filter(public_id=self.kwargs["id"]).first()
        if job is None:
            raise JobNotFound()
        return job

    @extend_schema(request=JobCreateSerializer, responses={201: JobSerializer})
    def create(self, request: Request) -> Response:
        serializer = JobCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)

        def run() -> Response:
            job = ai_job_create(
                brand=request.current_brand, user=request.user, **serializer.validated_data
            )
            job.refresh_from_db()
            data = JobSerializer(job).data
            return Response(data, status=status.HTTP_201_CREATED, headers=_job_location(data))

        return idempotent_response(
            request=request,
            brand=request.current_brand,
            scope="jobs.create",
            run=run,
            headers_for=_job_location,
        )

    @extend_schema(
        request=JobBatchCreateSerializer,
        responses={201: JobBatchSerializer},
        description=(
            "Create 1 to 100 jobs, all or none. Each item is a POST /ai/jobs/ body, validated "
            "the same way; an error names its item (`jobs[2].priority`, `item_index`)."
        ),
    )
    @action(detail=False, methods=["post"])
    def batch(self, request: Request) -> Response:
        serializer = JobBatchCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)

        def run() -> Response:
            brand = request.current_brand
            created = ai_jobs_create_batch(
                brand=brand, user=request.user, items=serializer.validated_data["jobs"]
            )
            # Read back after the commit: as POST /ai/jobs/ answers, each as it is now.
            jobs = jobs_get_many(brand=brand, ids=[job.pk for job in created])
            return Response(
                JobBatchSerializer({"count": len(jobs), "results": jobs}).data,
                status=status.HTTP_201_CREATED,
            )

        return idempotent_response(
            request=request, brand=request.current_brand, scope="jobs.batch", run=run
        )

    @extend_schema(request=None, responses=JobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, id: str) -> Response:
        job = ai_job_cancel(brand=request.current_brand, public_id=id)
        return Response(JobSerializer(job).data)

    @extend_schema(
        parameters=[OpenApiParameter("days", OpenApiTypes.INT, default=30)],
        responses=JobsDashboardSerializer,
    )
    @action(detail=False, methods=["get"])
    def dashboard(self, request: Request) -> Response:
        query = DashboardQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        days = query.validated_data["days"]
        since = timezone.now() - timedelta(days=days)
        data = jobs_dashboard(brand=request.current_brand, since=since)
        period = {"days": days, "since": since.isoformat()}
        return Response(JobsDashboardSerializer({"period": period, **data}).data)


class JobTypeViewSet(viewsets.ReadOnlyModelViewSet):
    """Job types with their categories (shared by every brand)."""

    serializer_class = JobTypeSerializer
    lookup_field = "code"
    filter_backends: list[type] = []

    def get_queryset(self) -> QuerySet:
        return job_types_active()


def _job_location(job: Any) -> dict[str, str]:
    """The ``Location`` of a created job, from its response body (a replay's too)."""
    return {"Location": f"/ai/jobs/{job['id']}/"}

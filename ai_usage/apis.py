from __future__ import annotations

from typing import Any

from django.db.models import F, QuerySet
from django.http import FileResponse, StreamingHttpResponse
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.filters import SearchFilter
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ai_core.scoping import BrandScopedViewSetMixin

from .errors import AlertNotFound
from .exports import csv_lines, xlsx_file
from .filters import AlertFilter, StableOrderingFilter, UsageFilter
from .models import UsageAlert, UsageRecord
from .pagination import UsagePagination
from .selectors import (
    usage_cost_breakdown,
    usage_count,
    usage_dashboard,
    usage_efficiency,
    usage_model_comparison,
    usage_period,
    usage_trends,
)
from .serializers import (
    CostBreakdownQuerySerializer,
    DashboardQuerySerializer,
    ExportQuerySerializer,
    FeedbackResultSerializer,
    FeedbackSerializer,
    ModelsQuerySerializer,
    TrendsQuerySerializer,
    UsageAlertSerializer,
    UsageRecordSerializer,
)
from .services import usage_alert_acknowledge, usage_feedback_submit

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _query(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    query = serializer_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data


class JsonOnlyNegotiation(DefaultContentNegotiation):
    """``?format=`` names the export format here, not a DRF renderer: always JSON (for
    errors; the export itself is a plain streaming response)."""

    def select_renderer(self, request: Request, renderers: list, format_suffix: Any = None):
        return JSONRenderer(), JSONRenderer.media_type


class UsageViewSet(BrandScopedViewSetMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """Usage records of the current brand, and analytics over them."""

    queryset = UsageRecord.objects.annotate(job_public_id=F("job__public_id"))
    serializer_class = UsageRecordSerializer
    filterset_class = UsageFilter
    filter_backends = [DjangoFilterBackend, SearchFilter, StableOrderingFilter]
    search_fields = ["model_name", "provider", "job_type", "job__public_id"]
    ordering_fields = [
        "created_at",
        "total_cost",
        "total_tokens",
        "execution_time_seconds",
        "quality_score",
        "cost_efficiency",
        "model_name",
    ]
    ordering = ["-created_at", "-job_id"]
    pagination_class = UsagePagination

    def known_count(self, request: Request) -> int | None:
        """The brand's row count from the rollups when nothing narrows the list."""
        if set(request.query_params) - {"page", "page_size", "ordering"}:
            return None
        return usage_count(brand=request.current_brand)

    @extend_schema(
        parameters=[OpenApiParameter("days", OpenApiTypes.INT, default=7)],
        responses=OpenApiTypes.OBJECT,
    )
    @action(detail=False, methods=["get"])
    def dashboard(self, request: Request) -> Response:
        query = _query(DashboardQuerySerializer, request)
        return Response(
            usage_dashboard(brand=request.current_brand, period=usage_period(days=query["days"]))
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("days", OpenApiTypes.INT, default=30),
            OpenApiParameter("models", OpenApiTypes.STR, description="o3,o3-mini,gpt-4o"),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    @action(detail=False, methods=["get"])
    def model_comparison(self, request: Request) -> Response:
        query = _query(ModelsQuerySerializer, request)
        return Response(
            usage_model_comparison(
                brand=request.current_brand,
                period=usage_period(days=query["days"]),
                models=query.get("models"),
            )
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("days", OpenApiTypes.INT, default=30),
            OpenApiParameter("model", OpenApiTypes.STR, description="one model or a comma list"),
            OpenApiParameter(
                "group_by",
                OpenApiTypes.STR,
                enum=["model", "provider", "job_type", "generation", "day"],
            ),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    @action(detail=False, methods=["get"])
    def cost_breakdown(self, request: Request) -> Response:
        query = _query(CostBreakdownQuerySerializer, request)
        return Response(
            usage_cost_breakdown(
                brand=request.current_brand,
                period=usage_period(days=query["days"]),
                group_by=query["group_by"],
                models=query.get("model"),
            )
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("days", OpenApiTypes.INT, default=30),
            OpenApiParameter("models", OpenApiTypes.STR),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    @action(detail=False, methods=["get"])
    def efficiency(self, request: Request) -> Response:
        query = _query(ModelsQuerySerializer, request)
        return Response(
            usage_efficiency(
                brand=request.current_brand,
                period=usage_period(days=query["days"]),
                models=query.get("models"),
            )
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("days", OpenApiTypes.INT, default=30),
            OpenApiParameter("interval", OpenApiTypes.STR, enum=["day", "week"]),
            OpenApiParameter("model", OpenApiTypes.STR),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    @action(detail=False, methods=["get"])
    def trends(self, request: Request) -> Response:
        query = _query(TrendsQuerySerializer, request)
        return Response(
            usage_trends(
                brand=request.current_brand,
                period=usage_period(days=query["days"]),
                interval=query["interval"],
                models=query.get("model"),
            )
        )

    @extend_schema(
        parameters=[OpenApiParameter("format", OpenApiTypes.STR, enum=["csv", "xlsx"])],
        responses={(200, "text/csv"): OpenApiTypes.BINARY, (200, XLSX_TYPE): OpenApiTypes.BINARY},
    )
    @action(
        detail=False,
        methods=["get"],
        content_negotiation_class=JsonOnlyNegotiation,
        pagination_class=None,
    )
    def export(self, request: Request) -> StreamingHttpResponse | FileResponse:
        export_format = _query(ExportQuerySerializer, request)["format"]
        records = self.filter_queryset(self.get_queryset())
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        filename = f"usage-{request.current_brand.slug}-{stamp}.{export_format}"
        if export_format == "xlsx":
            return FileResponse(
                xlsx_file(records), as_attachment=True, filename=filename, content_type=XLSX_TYPE
            )
        response = StreamingHttpResponse(csv_lines(records), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


class FeedbackApi(APIView):
    """``POST /ai/jobs/{id}/feedback/`` ``{score: 0–10, comment}``: the job's quality score."""

    @extend_schema(request=FeedbackSerializer, responses={201: FeedbackResultSerializer})
    def post(self, request: Request, id: str) -> Response:
        serializer = FeedbackSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        feedback, record, created = usage_feedback_submit(
            brand=request.current_brand,
            public_id=id,
            score=serializer.validated_data["score"],
            comment=serializer.validated_data["comment"],
            user=request.user,
        )
        return Response(
            FeedbackResultSerializer(FeedbackResultSerializer.build(feedback, record)).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class AlertViewSet(
    BrandScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Usage alerts of the current brand; ``active`` lists the unacknowledged ones."""

    queryset = UsageAlert.objects.select_related("acknowledged_by")
    serializer_class = UsageAlertSerializer
    filterset_class = AlertFilter
    search_fields = ["message", "kind", "period"]
    ordering_fields = ["created_at", "kind", "threshold", "period"]
    ordering = ["-created_at", "-id"]
    lookup_value_regex = "[0-9]+"

    def get_object(self) -> UsageAlert:
        alert = self.get_queryset().filter(pk=self.kwargs["pk"]).first()
        if alert is None:
            raise AlertNotFound()
        return alert

    def get_queryset(self) -> QuerySet[UsageAlert]:
        queryset = super().get_queryset()
        if self.action == "active":
            queryset = queryset.filter(acknowledged_at__isnull=True)
        return queryset

    @action(detail=False, methods=["get"])
    def active(self, request: Request) -> Response:
        return self.list(request)

    @extend_schema(request=None, responses=UsageAlertSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, pk: str) -> Response:
        alert = usage_alert_acknowledge(
            brand=request.current_brand, alert_id=int(pk), user=request.user
        )
        return Response(UsageAlertSerializer(alert).data)

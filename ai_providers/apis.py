"""Providers, their health, and the current brand's credentials (SPEC §5, ai_providers).

Reads are open to every member of the brand; every credential write and the connection
test need role ``admin`` (403 ``PERMISSION_DENIED``). Credentials are brand-scoped by
``BrandScopedViewSetMixin`` (lists) and ``credential_get`` (one credential): another
brand's id answers exactly like a missing one, 404 ``NOT_FOUND``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ai_core.permissions import IsBrandAdminOrReadOnly
from ai_core.scoping import BrandScopedViewSetMixin, request_brand

from .budgets import brand_quota_cached, brand_quota_update, budget_status, quota_status
from .errors import CredentialInvalid
from .filters import CredentialFilter
from .health import provider_health
from .models import Provider, ProviderCredential
from .selectors import credential_for_provider, credential_get, providers_with_brand_credentials
from .serializers import (
    ConnectionTestRequestSerializer,
    ConnectionTestResultSerializer,
    CredentialCreateSerializer,
    CredentialSerializer,
    CredentialUpdateSerializer,
    ProviderSerializer,
    QuotaStatusQuerySerializer,
    QuotaUpdateSerializer,
)
from .services import (
    credential_create,
    credential_delete,
    credential_test_connection,
    credential_update,
)
from .webhooks import webhook_settings


class ProviderViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Providers (global) with the current brand's credential counts, and their health."""

    serializer_class = ProviderSerializer
    filter_backends: list[type] = []

    def get_queryset(self) -> QuerySet[Provider]:
        brand = request_brand(self.request)
        if brand is None:
            return Provider.objects.none()
        return providers_with_brand_credentials(brand=brand)

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=False, methods=["get"], pagination_class=None)
    def health(self, request: Request) -> Response:
        return Response(provider_health(brand=request.current_brand))


class CredentialViewSet(
    BrandScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """The current brand's provider credentials; ``api_key`` is write-only."""

    queryset = ProviderCredential.objects.select_related("provider")
    serializer_class = CredentialSerializer
    permission_classes = [IsAuthenticated, IsBrandAdminOrReadOnly]
    filterset_class = CredentialFilter
    search_fields = ["name"]
    ordering_fields = ["priority", "name", "created_at", "key_set_at", "last_used_at"]
    ordering = ["provider__code", "priority", "id"]

    def get_object(self) -> ProviderCredential:
        return credential_get(brand=self.request.current_brand, credential_id=self.kwargs["pk"])

    @extend_schema(request=CredentialCreateSerializer, responses={201: CredentialSerializer})
    def create(self, request: Request) -> Response:
        serializer = CredentialCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        credential = credential_create(
            brand=request.current_brand, provider_code=data.pop("provider"), **data
        )
        return Response(
            CredentialSerializer(credential).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/ai/credentials/{credential.pk}/"},
        )

    @extend_schema(request=CredentialUpdateSerializer, responses=CredentialSerializer)
    def update(self, request: Request, pk: str, partial: bool = False) -> Response:
        credential = self.get_object()
        serializer = CredentialUpdateSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data: dict[str, Any] = dict(serializer.validated_data)
        provider = data.pop("provider", None)
        if provider is not None and provider != credential.provider.code:
            raise CredentialInvalid(
                field_errors={"provider": ["The provider of a credential cannot be changed."]}
            )
        credential = credential_update(credential=credential, **data)
        return Response(CredentialSerializer(credential).data)

    @extend_schema(request=CredentialUpdateSerializer, responses=CredentialSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        return self.update(request, pk, partial=True)

    def destroy(self, request: Request, pk: str) -> Response:
        credential_delete(credential=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=ConnectionTestRequestSerializer, responses=ConnectionTestResultSerializer
    )
    @action(detail=False, methods=["post"])
    def test_connection(self, request: Request) -> Response:
        query = ConnectionTestRequestSerializer(data=request.data)
        query.is_valid(raise_exception=True)
        brand = request.current_brand
        if "credential_id" in query.validated_data:
            credential = credential_get(
                brand=brand, credential_id=query.validated_data["credential_id"]
            )
        else:
            credential = credential_for_provider(
                brand=brand, provider_code=query.validated_data["provider"]
            )
        result = credential_test_connection(credential=credential)
        return Response(ConnectionTestResultSerializer(result).data)

    @extend_schema(parameters=[QuotaStatusQuerySerializer], responses=OpenApiTypes.OBJECT)
    @action(detail=False, methods=["get"])
    def quota_status(self, request: Request) -> Response:
        """The brand's budgets and quotas with this provider's share of today's and this
        month's usage."""
        query = QuotaStatusQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(
            quota_status(
                brand=request.current_brand, provider_code=query.validated_data["provider"]
            )
        )


class QuotaApi(APIView):
    """GET: the brand's limits, today's and this month's spend, reservations and counts.
    PATCH (role admin): set the brand's overrides (null = the setting's default)."""

    permission_classes = [IsAuthenticated, IsBrandAdminOrReadOnly]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        return Response(self._status(request))

    @extend_schema(request=QuotaUpdateSerializer, responses=OpenApiTypes.OBJECT)
    def patch(self, request: Request) -> Response:
        serializer = QuotaUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        brand_quota_update(brand=request.current_brand, **serializer.validated_data)
        return Response(self._status(request))

    @staticmethod
    def _status(request: Request) -> dict:
        brand = request.current_brand
        quota = brand_quota_cached(brand.pk)
        return {
            **budget_status(brand=brand),
            "response_cache": bool(quota and quota.response_cache),
            "webhooks": webhook_settings(brand=brand),
        }

"""Gateway views (``/ai/v1/…``, API keys) and key management (``/ai/api-keys/``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from ai_core.idempotency import HEADER as IDEMPOTENCY_HEADER
from ai_core.idempotency import idempotent_response
from ai_core.permissions import IsBrandAdmin
from megahub.errors import NotFound, ValidationFailed
from megahub.serializers import DecimalField, RejectUnknownFieldsMixin
from megahub.tracing import in_this_context

from .gateway import (
    ApiKeyAuthentication,
    api_key_create,
    api_key_month_block,
    api_key_month_counters,
    api_key_revoke,
    api_key_update,
    chat_completion_body,
    gateway_check_model,
    gateway_key_fallbacks,
    model_body,
    models_body,
    openai_exception_handler,
)
from .models import BrandApiKey
from .registry import ai_model_get
from .services import chat_stream_open, chat_stream_relay, chat_submit


class GatewayView(APIView):
    brand_exempt = True  # authenticated by API key, not by JWT + X-Brand-ID
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsAuthenticated]

    def get_exception_handler(self) -> Any:
        return openai_exception_handler


class ChatCompletionsApi(GatewayView):
    """``POST /ai/v1/chat/completions`` in OpenAI's wire format."""

    @extend_schema(request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request) -> Response:
        body = request.data
        if not isinstance(body, dict):
            raise ValidationFailed("The request body must be a JSON object.")
        model = body.get("model") or settings.AI_DEFAULT_MODEL
        gateway_check_model(api_key=request.auth, model=model)
        if body.get("async") is not None:
            # Not OpenAI's, and the gateway always answers at once: refused, not ignored.
            raise ValidationFailed(
                field_errors={"async": ["Not supported by the gateway: use POST /ai/openai/chat/."]}
            )
        if body.get("user") is not None and not isinstance(body["user"], str):
            # OpenAI's end-user id: a string (not sent on, but checked like every field).
            raise ValidationFailed(field_errors={"user": ["Must be a string."]})
        chat_body = {k: v for k, v in body.items() if k not in ("stream", "stream_options", "user")}
        chat_body = gateway_key_fallbacks(api_key=request.auth, model=model, body=chat_body)
        stream = body.get("stream", False)
        if stream is not None and not isinstance(stream, bool):
            raise ValidationFailed(field_errors={"stream": ["Must be true or false."]})
        if not stream and body.get("stream_options") is not None:
            # As OpenAI answers it (the options would be silently meaningless).
            raise ValidationFailed(
                field_errors={"stream_options": ["Only allowed when stream is true."]}
            )
        if stream:
            if request.headers.get(IDEMPOTENCY_HEADER) is not None:
                # A stream is sent as it is made: it cannot be replayed, so a repeat would
                # run (and bill) twice. Refused, rather than the key silently ignored.
                raise ValidationFailed(
                    "Idempotency-Key cannot be used with stream: true (a stream cannot be "
                    "replayed).",
                    field_errors={
                        IDEMPOTENCY_HEADER: [
                            "Not supported with stream: true. Send the request without it, "
                            "or without stream."
                        ]
                    },
                )
            return self._stream(request, body, chat_body)

        def run() -> Response:
            job = chat_submit(
                brand=request.current_brand,
                user=None,
                body=chat_body,
                run_now=True,
                api_key_id=request.auth.pk,
            )
            return Response(chat_completion_body(job))

        return idempotent_response(
            request=request, brand=request.current_brand, scope="gateway.chat", run=run
        )

    def _stream(
        self, request: Request, body: dict[str, Any], chat_body: dict[str, Any]
    ) -> StreamingHttpResponse:
        options = body.get("stream_options") or {}
        if not isinstance(options, dict):
            raise ValidationFailed(field_errors={"stream_options": ["Must be an object."]})
        job, owner, prepared, execution = chat_stream_open(
            brand=request.current_brand, body=chat_body, api_key_id=request.auth.pk
        )
        relay = chat_stream_relay(
            job=job,
            owner=owner,
            prepared=prepared,
            execution=execution,
            include_usage=bool(options.get("include_usage")),
        )
        # Relayed after this view has returned: in this request's trace context still.
        response = StreamingHttpResponse(in_this_context(relay), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        response["X-MegaHub-Job-ID"] = job.public_id
        return response


class ModelsApi(GatewayView):
    """``GET /ai/v1/models``: the models this key can call."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        return Response(models_body(api_key=request.auth))


class ModelApi(GatewayView):
    """``GET /ai/v1/models/{model}``: one model this key can call (404 otherwise)."""

    @extend_schema(operation_id="ai_v1_model_retrieve", responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, model: str) -> Response:
        return Response(model_body(api_key=request.auth, model=model))


class ApiKeySerializer(serializers.ModelSerializer):
    """A key as listed: never the key itself, only its prefix. With a ``monthly_budget``,
    ``month`` shows this month's spend and reservations against it (else null)."""

    monthly_budget = serializers.DecimalField(max_digits=14, decimal_places=6, allow_null=True)
    month = serializers.SerializerMethodField()

    class Meta:
        model = BrandApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "allowed_models",
            "monthly_budget",
            "month",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]

    def get_month(self, obj: BrandApiKey) -> dict[str, str] | None:
        if obj.monthly_budget is None:
            return None
        # One query for every key of the list (the context is shared by its items).
        counters = self.context.get("_key_counters")
        if counters is None:
            counters = self.context["_key_counters"] = api_key_month_counters(brand=obj.brand)
        return api_key_month_block(obj, counters.get(obj.pk))


def _known_models(names: list[str]) -> list[str]:
    """``allowed_models``: names of the model registry (a typo would make a key that can
    call nothing, or not the model meant)."""
    unknown = [name for name in names if ai_model_get(name=name) is None]
    if unknown:
        raise serializers.ValidationError(
            f"Unknown model{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}. "
            "See GET /ai/openai/chat/ for the registry."
        )
    return names


class ApiKeyCreateSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    name = serializers.CharField(max_length=100)
    allowed_models = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        default=list,
        validators=[_known_models],
    )
    monthly_budget = DecimalField(
        max_digits=14, decimal_places=6, min_value=0, allow_null=True, required=False
    )


class ApiKeyUpdateSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    also_known = tuple(ApiKeySerializer.Meta.fields)
    name = serializers.CharField(max_length=100, required=False)
    allowed_models = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, validators=[_known_models]
    )
    monthly_budget = DecimalField(
        max_digits=14, decimal_places=6, min_value=0, allow_null=True, required=False
    )

    def validate(self, attrs: dict) -> dict:
        if not attrs:
            raise serializers.ValidationError("Give at least one field to change.")
        return attrs


class ApiKeyListApi(APIView):
    """``GET`` the brand's keys (prefix only); ``POST`` creates one and returns the key once."""

    permission_classes = [IsAuthenticated, IsBrandAdmin]
    # The project's list pagination (SPEC §5); the schema reads it from here too.
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(responses=ApiKeySerializer(many=True))
    def get(self, request: Request) -> Response:
        keys = BrandApiKey.objects.filter(brand=request.current_brand).order_by(
            "-created_at", "-pk"
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(keys, request, view=self)
        return paginator.get_paginated_response(ApiKeySerializer(page, many=True).data)

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        serializer = ApiKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        row, key = api_key_create(
            brand=request.current_brand, user=request.user, **serializer.validated_data
        )
        # As a key is listed, plus the key itself: shown this once.
        return Response({**ApiKeySerializer(row).data, "key": key}, status=201)


class ApiKeyDetailApi(APIView):
    permission_classes = [IsAuthenticated, IsBrandAdmin]

    @extend_schema(responses=ApiKeySerializer)
    def get(self, request: Request, key_id: str) -> Response:
        """One of the brand's keys as listed (prefix only, revoked ones included)."""
        row = (
            BrandApiKey.objects.filter(brand=request.current_brand, pk=key_id).first()
            if key_id.isascii() and key_id.isdigit()
            else None
        )
        if row is None:
            raise NotFound()
        return Response(ApiKeySerializer(row).data)

    @extend_schema(request=ApiKeyUpdateSerializer, responses=ApiKeySerializer)
    def patch(self, request: Request, key_id: str) -> Response:
        """Change an active key's name, allowed models or monthly budget."""
        serializer = ApiKeyUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        row = api_key_update(
            brand=request.current_brand, key_id=key_id, **serializer.validated_data
        )
        return Response(ApiKeySerializer(row).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, key_id: str) -> Response:
        api_key_revoke(brand=request.current_brand, key_id=key_id)
        return Response(status=204)

"""A URLconf for mechanism tests: the real routes plus test-only views under /ai/."""

import django_filters
from django.http import HttpRequest
from django.urls import include, path
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from ai_core.models import BrandMembership
from ai_core.scoping import (
    BrandScopedPrimaryKeyRelatedField,
    BrandScopedViewSetMixin,
    brand_queryset,
)
from megahub import urls as real_urls


class MembershipSerializer(serializers.ModelSerializer):
    class Meta:
        model = BrandMembership
        fields = ["id", "role", "brand"]


class PickSerializer(serializers.Serializer):
    """A related-object input: must only accept the current brand's memberships."""

    membership = BrandScopedPrimaryKeyRelatedField(queryset=BrandMembership.objects.all())


class MembershipFilter(django_filters.FilterSet):
    same_as = django_filters.ModelChoiceFilter(
        queryset=brand_queryset(BrandMembership), method="filter_same_as"
    )

    def filter_same_as(self, queryset, name, value):
        return queryset.filter(pk=value.pk)

    class Meta:
        model = BrandMembership
        fields = ["role"]


class MembershipViewSet(BrandScopedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    queryset = BrandMembership.objects.all()
    serializer_class = MembershipSerializer
    filterset_class = MembershipFilter
    ordering_fields = ["id", "role"]

    @action(detail=False, methods=["post"])
    def pick(self, request):
        serializer = PickSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        return Response({"picked": serializer.validated_data["membership"].pk})


class BoomApi(APIView):
    def get(self, request):
        raise RuntimeError("secret internals sk-live-should-not-leak")


def boom_plain(request: HttpRequest):
    raise RuntimeError("secret internals sk-live-should-not-leak")


boom_plain.brand_exempt = True

router_views = [
    path("ai/test/memberships/", MembershipViewSet.as_view({"get": "list"})),
    path("ai/test/memberships/pick/", MembershipViewSet.as_view({"post": "pick"})),
    path("ai/test/memberships/<int:pk>/", MembershipViewSet.as_view({"get": "retrieve"})),
    path("ai/test/boom/", BoomApi.as_view()),
    path("ai/test/boom-plain/", boom_plain),
]

urlpatterns = [*router_views, path("", include(real_urls))]

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .selectors import user_memberships
from .serializers import MeSerializer


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

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request


class IsBrandAdmin(BasePermission):
    """Role ``admin`` in the current brand."""

    message = "This action needs the admin role in this brand."

    def has_permission(self, request: Request, view: Any) -> bool:
        membership = getattr(request._request, "brand_membership", None)
        return bool(membership and membership.is_admin)


class IsBrandAdminOrReadOnly(IsBrandAdmin):
    """Members read; only admins write (SPEC §2: credentials, quotas, budgets)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return request.method in SAFE_METHODS or super().has_permission(request, view)

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from .metrics import metrics_view
from .middleware import (
    NOT_FOUND_URL_NAME,
    json_not_found,
    json_server_error,
    read_only_endpoint,
)


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


json_not_found.brand_exempt = True  # type: ignore[attr-defined]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", read_only_endpoint(health)),
    path("metrics", read_only_endpoint(metrics_view), name="metrics"),
    path("api/auth/token/", TokenObtainPairView.as_view(), name="token_obtain_pair"),
    path("api/auth/token/refresh/", TokenRefreshView.as_view(), name="token_refresh"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("ai/openai/", include("ai_openai.urls")),
    path("ai/", include("ai_openai.gateway_urls")),
    path("ai/", include("ai_providers.urls")),
    path("ai/", include("ai_usage.urls")),
    path("ai/", include("ai_core.urls")),
    # Unknown URLs under the API prefixes answer in the API's JSON error format.
    re_path(r"^(?:ai|api)(?:/.*)?$", json_not_found, name=NOT_FOUND_URL_NAME),
]

handler404 = json_not_found
handler500 = json_server_error

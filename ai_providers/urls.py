from django.urls import path
from rest_framework.routers import SimpleRouter

from .apis import CredentialViewSet, ProviderViewSet, QuotaApi

# Included at /ai/ (megahub/urls.py): providers/, providers/health/, credentials/..., quotas/
router = SimpleRouter(trailing_slash="/?")
router.register("providers", ProviderViewSet, basename="provider")
router.register("credentials", CredentialViewSet, basename="credential")

urlpatterns = [path("quotas/", QuotaApi.as_view(), name="quotas"), *router.urls]

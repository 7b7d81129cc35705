from rest_framework.routers import SimpleRouter

from .apis import CredentialViewSet, ProviderViewSet

# Included at /ai/ (megahub/urls.py): only providers/, providers/health/ and credentials/...
router = SimpleRouter(trailing_slash="/?")
router.register("providers", ProviderViewSet, basename="provider")
router.register("credentials", CredentialViewSet, basename="credential")

urlpatterns = router.urls

"""``/ai/usage/…``, ``/ai/alerts/…`` and ``/ai/jobs/{id}/feedback/``.

Included in ``megahub/urls.py`` before ai_core's routes, so the feedback route is matched
before ai_core's jobs router (which has no such route and would answer 404).
"""

from django.urls import re_path
from rest_framework.routers import SimpleRouter

from .apis import AlertViewSet, FeedbackApi, UsageViewSet

router = SimpleRouter(trailing_slash="/?")
router.register("usage", UsageViewSet, basename="usage")
router.register("alerts", AlertViewSet, basename="usage-alert")

urlpatterns = [
    re_path(r"^jobs/(?P<id>[^/]+)/feedback/?$", FeedbackApi.as_view(), name="job-feedback"),
    *router.urls,
]

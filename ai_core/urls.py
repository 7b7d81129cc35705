from django.urls import path
from rest_framework.routers import SimpleRouter

from .apis import JobTypeViewSet, JobViewSet, MeApi

router = SimpleRouter(trailing_slash="/?")
router.register("jobs", JobViewSet, basename="job")
router.register("job-types", JobTypeViewSet, basename="job-type")

urlpatterns = [
    path("me/", MeApi.as_view(), name="me"),
    *router.urls,
]

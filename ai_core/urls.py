from django.urls import path
from rest_framework.routers import SimpleRouter

from .apis import MeApi

router = SimpleRouter(trailing_slash="/?")

urlpatterns = [
    path("me/", MeApi.as_view(), name="me"),
    *router.urls,
]

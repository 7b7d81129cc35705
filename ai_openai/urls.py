from django.urls import path
from rest_framework.routers import SimpleRouter

from .apis import ChatApi, JobResultApi, OpenAIJobViewSet, RecommendModelApi

router = SimpleRouter(trailing_slash="/?")
router.register("jobs", OpenAIJobViewSet, basename="openai-job")

urlpatterns = [
    path("chat/", ChatApi.as_view(), name="openai-chat"),
    path("recommend_model/", RecommendModelApi.as_view(), name="openai-recommend-model"),
    path("completion/job_result/", JobResultApi.as_view(), name="openai-job-result"),
    *router.urls,
]

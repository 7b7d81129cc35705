from django.urls import path, re_path

from .gateway_apis import (
    ApiKeyDetailApi,
    ApiKeyListApi,
    ChatCompletionsApi,
    ModelApi,
    ModelsApi,
)

# Included at /ai/ (megahub/urls.py).
urlpatterns = [
    re_path(r"^v1/chat/completions/?$", ChatCompletionsApi.as_view(), name="gateway-chat"),
    re_path(r"^v1/models/?$", ModelsApi.as_view(), name="gateway-models"),
    re_path(r"^v1/models/(?P<model>[^/]+)/?$", ModelApi.as_view(), name="gateway-model"),
    path("api-keys/", ApiKeyListApi.as_view(), name="api-keys"),
    path("api-keys/<str:key_id>/", ApiKeyDetailApi.as_view(), name="api-key-detail"),
]

from django.apps import AppConfig


class AiCoreConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "ai_core"
    verbose_name = "AI core"

    def ready(self) -> None:
        # The OpenAPI schema's descriptions of our authentications (drf-spectacular).
        import megahub.openapi  # noqa: F401

from django.apps import AppConfig
from django.core import checks


class AiProvidersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "ai_providers"
    verbose_name = "AI providers"

    def ready(self) -> None:
        from . import webhooks  # noqa: F401 - connects the job webhooks to ai_core's signal
        from .crypto import check_encryption_key

        checks.register(check_encryption_key)

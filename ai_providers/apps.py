from django.apps import AppConfig


class AiProvidersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "ai_providers"
    verbose_name = "AI providers"

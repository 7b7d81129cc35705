from django.apps import AppConfig


class AiOpenaiConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "ai_openai"
    verbose_name = "AI OpenAI"

from django.apps import AppConfig


class AiOpenaiConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "ai_openai"
    verbose_name = "AI OpenAI"

    def ready(self) -> None:
        from ai_core.handlers import register_handler

        from .services import CHAT_JOB_HANDLER

        # ai_core runs jobs without importing us: we register the chat handler with it.
        register_handler(CHAT_JOB_HANDLER)

        from ai_core.models import AIJobType, Brand
        from ai_providers.budget_models import BrandQuota
        from ai_providers.models import Provider, ProviderCredential
        from megahub.refcache import clear_on_change

        from .models import AIModel, BrandApiKey

        # The hot path reads these from process-local caches (megahub.refcache).
        clear_on_change(
            Brand, AIJobType, AIModel, BrandApiKey, Provider, ProviderCredential, BrandQuota
        )

import os

from django.core.management.base import BaseCommand, CommandParser

from ai_core.services import brand_setup_with_user
from ai_openai.setup import ai_infrastructure_setup
from ai_providers.models import BrandQuota, ProviderCredential
from ai_providers.services import credential_create, credential_update


class Command(BaseCommand):
    help = (
        "Set up the local demo: infrastructure (with o3), brand 'demo', admin user 'demo', "
        "and an OpenAI credential pointing at the bundled fake server. Idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--password", required=True, help="Password of the demo user.")
        parser.add_argument(
            "--fake-url",
            default=os.environ.get("FAKE_OPENAI_URL", "http://127.0.0.1:8787/v1"),
            help="Base URL of the fake OpenAI server.",
        )

    def handle(self, *args: object, **options: str) -> None:
        ai_infrastructure_setup(include_o3=True)
        result = brand_setup_with_user(
            slug="demo",
            name="Demo brand",
            username="demo",
            password=options["password"],
            role="admin",
        )
        existing = ProviderCredential.objects.filter(
            brand=result.brand, provider__code="openai", name="fake-openai"
        ).first()
        if existing is not None and existing.api_base != options["fake_url"]:
            # The fake server moved (another FAKE_OPENAI_PORT): the demo follows it.
            credential_update(credential=existing, api_base=options["fake_url"])
        if existing is None:
            credential_create(
                brand=result.brand,
                provider_code="openai",
                name="fake-openai",
                api_key="sk-demo-fake-openai-key",
                api_base=options["fake_url"],
            )
        # The demo talks to the fake server: generous token quotas so requests without
        # max_completion_tokens (which reserve the model's whole max output) are accepted.
        # Set once: a later run keeps what an admin changed since.
        BrandQuota.objects.get_or_create(
            brand=result.brand,
            defaults={"monthly_token_quota": 100_000_000, "o3_monthly_token_quota": 20_000_000},
        )
        self.stdout.write(f"demo brand ready (credential 'fake-openai' -> {options['fake_url']})")

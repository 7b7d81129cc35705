"""``manage.py migrate_to_o3_support``: bring an existing install up to o3 support."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from ai_core.models import Brand
from ai_core.services.job_types import job_types_seed
from ai_openai.models import AIModel
from ai_openai.registry import registry_seed
from ai_providers.budgets import brand_limits
from ai_providers.services import providers_seed


class Command(BaseCommand):
    help = (
        "Add o3 support to an existing install, in one transaction: complete the providers "
        "(so they list the o3 models), add the o3-family models (o3, o3-mini, o4-mini) to "
        "the registry and enable those that exist but are disabled, and add (or "
        "re-activate) the reasoning job types. Then list each active brand's o3 limits in "
        "force (o3 daily budget, o3 monthly tokens). Idempotent: a second run changes "
        "nothing. o3 calls also need AI_ENABLE_O3=true (warned about when it is off)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Show what would change and roll it back.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run = bool(options["dry_run"])
        with transaction.atomic():
            providers = providers_seed()
            models_created, _ = registry_seed(include_o3=True)
            enabled = _enable_o3_models()
            catalogue = job_types_seed(include_o3=True)
            if dry_run:
                transaction.set_rollback(True)

        rows = [
            ("providers", providers),
            ("o3 models", (models_created, len(enabled))),
            ("job categories", catalogue.categories),
            ("job types", catalogue.job_types),
        ]
        self.stdout.write(f"{'part':<16}{'created':>9}{'updated':>9}")
        for name, (created, updated) in rows:
            self.stdout.write(f"{name:<16}{created:>9}{updated:>9}")
        if enabled:
            self.stdout.write(f"enabled: {', '.join(enabled)}")
        changed = any(providers) or models_created or enabled or catalogue.changed
        if dry_run:
            self.stdout.write("dry run: nothing was saved")
        else:
            self.stdout.write("changed" if changed else "already up to date")

        self._quotas()
        if getattr(settings, "AI_ENABLE_O3", True):
            self.stdout.write("AI_ENABLE_O3 is true: o3 models are callable.")
        else:
            self.stdout.write(
                self.style.WARNING(
                    "WARNING: AI_ENABLE_O3 is false, so o3-family models still answer 403 "
                    "MODEL_DISABLED. Set AI_ENABLE_O3=true and restart the API and workers."
                )
            )

    def _quotas(self) -> None:
        brands = list(Brand.objects.filter(is_active=True).order_by("slug"))
        if not brands:
            return
        self.stdout.write(f"{'brand':<20}  {'o3 daily budget USD':>20}  {'o3 monthly tokens':>18}")
        for brand in brands:
            limits = brand_limits(brand=brand)
            self.stdout.write(
                f"{brand.slug[:20]:<20}  {limits.o3_daily_budget:>20}  "
                f"{limits.o3_monthly_token_quota:>18}"
            )
            if not limits.o3_daily_budget or not limits.o3_monthly_token_quota:
                self.stdout.write(
                    self.style.WARNING(
                        f"WARNING: brand {brand.slug} has a zero o3 limit: its o3 calls will be "
                        "refused until the limit is raised (PATCH /ai/quotas/ or the admin)."
                    )
                )


def _enable_o3_models() -> list[str]:
    """Enable the o3-family registry rows that are disabled; their names, in order.

    Saved row by row so ``updated_at`` records the change.
    """
    names = []
    for model in AIModel.objects.select_for_update().filter(is_o3_family=True, enabled=False):
        model.enabled = True
        model.save(update_fields=["enabled", "updated_at"])
        names.append(model.name)
    return sorted(names)

"""One idempotent set-up of everything the service needs in its database."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from ai_core.services.job_types import job_types_seed
from ai_providers.services import providers_seed

from .registry import registry_seed


@dataclass(frozen=True)
class SetupReport:
    providers: tuple[int, int]
    models: tuple[int, int]
    job_categories: tuple[int, int]
    job_types: tuple[int, int]

    @property
    def changed(self) -> bool:
        parts = (self.providers, self.models, self.job_categories, self.job_types)
        return any(sum(pair) for pair in parts)


@transaction.atomic
def ai_infrastructure_setup(*, include_o3: bool) -> SetupReport:
    """Providers, the model registry and job types; each part reports (created, updated)."""
    providers = providers_seed()
    models = registry_seed(include_o3=include_o3)
    job_types = job_types_seed(include_o3=include_o3)
    return SetupReport(
        providers=providers,
        models=models,
        job_categories=job_types.categories,
        job_types=job_types.job_types,
    )

"""Writes for ai_core, by sub-domain: brands and memberships, jobs."""

from .brands import BrandSetupResult, brand_setup_with_user
from .jobs import (
    ai_job_cancel,
    ai_job_create,
    ai_job_run,
    ai_job_transition,
    ai_jobs_create_batch,
    ai_jobs_sweep,
)

__all__ = [
    "BrandSetupResult",
    "ai_job_cancel",
    "ai_job_create",
    "ai_job_run",
    "ai_job_transition",
    "ai_jobs_create_batch",
    "ai_jobs_sweep",
    "brand_setup_with_user",
]

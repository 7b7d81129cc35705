"""Usage fixtures: jobs and usage rows written through ``usage_record_create``.

``UsageSpec`` keeps what each row was created from, so the tests compute every expected
figure in plain Python from the specs (``expected.py``), never from the database.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from ai_core.models import AIJob, AIJobType, Brand, JobStatus
from ai_core.services.job_types import job_types_seed
from ai_usage.models import UsageRecord
from ai_usage.services import usage_feedback_submit, usage_record_create

# (model, generation, provider, USD per 1M input, per 1M output)
MODELS = [
    ("o3", "new", "openai", Decimal("2.00"), Decimal("8.00")),
    ("o3-mini", "new", "openai", Decimal("1.10"), Decimal("4.40")),
    ("gpt-4.1", "new", "azure_openai", Decimal("2.00"), Decimal("8.00")),
    ("gpt-4o", "legacy", "openai", Decimal("2.50"), Decimal("10.00")),
    ("gpt-4-turbo", "legacy", "azure_openai", Decimal("10.00"), Decimal("30.00")),
]
JOB_TYPES = ["chat_completion", "content_analysis", "summarization", "complex_reasoning"]


@dataclass(frozen=True)
class UsageSpec:
    job_id: str
    brand_id: int
    created_at: datetime
    provider: str
    model_name: str
    generation: str
    job_type: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    total_cost: Decimal
    execution_time_seconds: Decimal
    is_cached: bool = False
    quality_score: Decimal | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def day(self) -> date:
        return self.created_at.astimezone(UTC).date()


def today_utc() -> date:
    return timezone.now().astimezone(UTC).date()


def at_day(days_ago: int, seconds: int = 0) -> datetime:
    """A moment ``days_ago`` UTC days ago; today's rows sit at 00:00 so they are never in
    the future whatever the clock says."""
    start = datetime.combine(today_utc() - timedelta(days=days_ago), time.min, tzinfo=UTC)
    return start + timedelta(seconds=seconds if days_ago else 0)


def make_job(brand: Brand, job_type: str = "chat_completion", **fields: object) -> AIJob:
    return AIJob.objects.create(
        brand=brand,
        job_type=AIJobType.objects.get(code=job_type),
        status=fields.pop("status", JobStatus.COMPLETED),
        **fields,
    )


def record_usage(brand: Brand, **overrides: object) -> tuple[UsageRecord, UsageSpec]:
    """One job and its usage row; returns the row and the spec it was made from."""
    fields: dict = {
        "provider": "openai",
        "model_name": "gpt-4o",
        "generation": "legacy",
        "job_type": "chat_completion",
        "prompt_tokens": 1000,
        "cached_tokens": 0,
        "completion_tokens": 500,
        "reasoning_tokens": 0,
        "total_cost": Decimal("0.007500"),
        "execution_time_seconds": Decimal("1.250"),
        "is_cached": False,
        "created_at": at_day(0),
    }
    fields.update(overrides)
    job = make_job(brand, fields.pop("job_type"))
    record = usage_record_create(job=job, **fields)
    spec = UsageSpec(job_id=job.public_id, brand_id=brand.pk, job_type=job.job_type.code, **fields)
    return record, spec


@dataclass
class Dataset:
    brand: Brand
    specs: list[UsageSpec]

    def score(self, index: int, score: str, comment: str = "") -> None:
        spec = self.specs[index]
        usage_feedback_submit(
            brand=self.brand, public_id=spec.job_id, score=Decimal(score), comment=comment
        )
        self.specs[index] = replace(spec, quality_score=Decimal(score).quantize(Decimal("0.01")))


def build_dataset(brand: Brand, *, rows: int, seed: int, max_days_ago: int = 40) -> Dataset:
    """``rows`` varied usage rows over the last ``max_days_ago`` days, about a third of
    them scored (some re-scored), a few cache hits at zero cost."""
    rng = random.Random(seed)
    specs = []
    for _ in range(rows):
        name, generation, provider, price_in, price_out = rng.choice(MODELS)
        prompt = rng.randint(10, 20_000)
        completion = rng.randint(1, 8_000)
        cached = rng.choice([0, 0, rng.randint(0, prompt)])
        reasoning = rng.randint(0, completion) if name.startswith("o3") else 0
        is_cached = rng.random() < 0.08
        cost = (
            Decimal(0)
            if is_cached
            else ((prompt * price_in + completion * price_out) / 1_000_000).quantize(
                Decimal("0.000001")
            )
        )
        _, spec = record_usage(
            brand,
            provider=provider,
            model_name=name,
            generation=generation,
            job_type=rng.choice(JOB_TYPES),
            prompt_tokens=prompt,
            cached_tokens=cached,
            completion_tokens=completion,
            reasoning_tokens=reasoning,
            total_cost=cost,
            execution_time_seconds=Decimal(rng.randint(40, 90_000)) / 1000,
            is_cached=is_cached,
            created_at=at_day(rng.randint(0, max_days_ago), rng.randint(0, 86_399)),
        )
        specs.append(spec)
    dataset = Dataset(brand=brand, specs=specs)
    for index in range(0, rows, 3):
        dataset.score(index, str(Decimal(rng.randint(0, 1000)) / 100))
    for index in range(0, rows, 9):  # re-scores replace the first score
        dataset.score(index, str(Decimal(rng.randint(0, 1000)) / 100))
    return dataset


@pytest.fixture
def job_types(db) -> None:
    job_types_seed(include_o3=True)


@pytest.fixture
def usage_data(brand, job_types) -> Dataset:
    return build_dataset(brand, rows=60, seed=7)


@pytest.fixture
def noise(other_brand, job_types) -> Dataset:
    """Another brand's rows, larger and pricier, on the same days and models."""
    return build_dataset(other_brand, rows=30, seed=99)


@pytest.fixture
def recorder(job_types) -> Callable[..., tuple[UsageRecord, UsageSpec]]:
    return record_usage

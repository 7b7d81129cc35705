"""Exports run in constant memory: rows stream from a chunked cursor, never a list.

The 100,000-row figure (CSV and XLSX, peak memory growth < 100 MB, totals round-tripped)
is measured by ``benchmarks/usage_dashboard.py`` and recorded in docs/performance.md; this
test checks the same property at a size the suite can afford.
"""

from __future__ import annotations

import csv
import io
import random
import tempfile
import tracemalloc
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone
from openpyxl import load_workbook

from ai_core.models import AIJob, AIJobType, JobStatus
from ai_usage.models import UsageRecord

pytestmark = pytest.mark.django_db

ROWS = 12_000


@pytest.fixture
def many_rows(brand, job_types) -> None:
    rng = random.Random(5)
    job_type = AIJobType.objects.get(code="chat_completion")
    now = timezone.now()
    jobs = AIJob.objects.bulk_create(
        [AIJob(brand=brand, job_type=job_type, status=JobStatus.COMPLETED) for _ in range(ROWS)],
        batch_size=2000,
    )
    if jobs[0].pk is None:  # backends that do not return ids from bulk inserts
        jobs = list(AIJob.objects.filter(brand=brand).order_by("pk"))
    UsageRecord.objects.bulk_create(
        [
            UsageRecord(
                job=job,
                brand=brand,
                created_at=now - timedelta(seconds=i),
                provider="openai",
                model_name=rng.choice(["o3", "gpt-4o", "o3-mini"]),
                generation="new",
                job_type="chat_completion",
                prompt_tokens=rng.randint(1, 9999),
                completion_tokens=rng.randint(1, 9999),
                total_tokens=0,
                total_cost=Decimal(rng.randint(1, 9_999_999)) / 1_000_000,
                execution_time_seconds=Decimal(rng.randint(1, 99_999)) / 1000,
            )
            for i, job in enumerate(jobs)
        ],
        batch_size=2000,
    )


def db_total(brand, **filters) -> Decimal:
    # SQLite sums decimals as floats: back to the micro-dollar (exact at this size).
    total = UsageRecord.objects.filter(brand=brand, **filters).aggregate(s=Sum("total_cost"))["s"]
    return Decimal(total).quantize(Decimal("0.000001"))


def traced_peak(consume) -> tuple[int, object]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        result = consume()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before, result


def test_csv_export_streams_in_small_memory(api_client, brand, many_rows):
    response = api_client.get("/ai/usage/export/?format=csv")
    # The sink is on disk: it must not count as export memory.
    with tempfile.TemporaryFile() as sink:

        def consume() -> None:
            for chunk in response.streaming_content:
                sink.write(chunk)

        peak, _ = traced_peak(consume)
        sink.seek(0)
        rows = list(csv.DictReader(io.TextIOWrapper(sink, encoding="utf-8")))
    assert len(rows) == ROWS
    assert sum(Decimal(r["total_cost"]) for r in rows) == db_total(brand)
    # Holding the 12,000 rows as model instances would take far more than this.
    assert peak < 8 * 1024 * 1024, peak


def test_xlsx_export_writes_in_small_memory(api_client, brand, many_rows):
    # Filtered to one model (about a third of the rows): tracemalloc slows openpyxl ~6x.
    query = "/ai/usage/export/?format=xlsx&model_name=o3"
    peak, response = traced_peak(lambda: api_client.get(query))
    workbook = load_workbook(io.BytesIO(b"".join(response.streaming_content)), read_only=True)
    values = list(workbook.worksheets[0].iter_rows(min_row=2, values_only=True))
    o3 = UsageRecord.objects.filter(brand=brand, model_name="o3")
    assert len(values) == o3.count() > ROWS // 4
    total = sum(Decimal(str(v[11])) for v in values)
    assert total == db_total(brand, model_name="o3")
    assert peak < 16 * 1024 * 1024, peak

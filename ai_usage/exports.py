"""Usage exports in constant memory.

Rows are read with ``QuerySet.iterator(chunk_size=…)`` (a server-side cursor on
PostgreSQL), as tuples of the export columns only. CSV is produced line by line for a
``StreamingHttpResponse``; XLSX is written by openpyxl's write-only mode (rows go straight
to the zip stream, strings inline, no shared-strings table) into an anonymous temporary
file that the response then streams back.

Money is exact: CSV has the decimal string (``0.012345``); XLSX has a numeric cell whose
stored literal is that same decimal string.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

from django.db.models import F, QuerySet

from .models import UsageRecord

CHUNK_SIZE = 2000
# Excel's limit is 1,048,576 rows a sheet; start a new sheet well before it.
XLSX_ROWS_PER_SHEET = 1_000_000

COLUMNS: tuple[tuple[str, str], ...] = (
    ("job_id", "job_public_id"),
    ("created_at", "created_at"),
    ("provider", "provider"),
    ("model_name", "model_name"),
    ("generation", "generation"),
    ("job_type", "job_type"),
    ("prompt_tokens", "prompt_tokens"),
    ("cached_tokens", "cached_tokens"),
    ("completion_tokens", "completion_tokens"),
    ("reasoning_tokens", "reasoning_tokens"),
    ("total_tokens", "total_tokens"),
    ("total_cost", "total_cost"),
    ("execution_time_seconds", "execution_time_seconds"),
    ("quality_score", "quality_score"),
    ("cost_efficiency", "cost_efficiency"),
    ("is_cached", "is_cached"),
)
HEADER = [name for name, _ in COLUMNS]


def export_rows(queryset: QuerySet[UsageRecord]) -> Iterator[tuple[Any, ...]]:
    """The export columns of ``queryset``'s rows (already brand-scoped and filtered), in
    the queryset's order, fetched ``CHUNK_SIZE`` at a time."""
    rows = queryset.annotate(job_public_id=F("job__public_id")).values_list(
        *(source for _, source in COLUMNS)
    )
    yield from rows.iterator(chunk_size=CHUNK_SIZE)


def _iso(value: datetime) -> str:
    """As the JSON API writes it (DRF): UTC as ``Z``, not ``+00:00``."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


class _Line:
    """A file-like sink for csv.writer that hands back what it was given."""

    def write(self, value: str) -> str:
        return value


def csv_lines(queryset: QuerySet[UsageRecord]) -> Iterator[str]:
    """The CSV export, one line at a time (header first)."""
    writer = csv.writer(_Line())
    yield writer.writerow(HEADER)
    for row in export_rows(queryset):
        yield writer.writerow([("" if v is None else _cell(v)) for v in row])


def xlsx_write(queryset: QuerySet[UsageRecord], sink: IO[bytes]) -> int:
    """Write the XLSX export to ``sink``; returns the number of data rows."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = None
    count = 0
    for row in export_rows(queryset):
        if count % XLSX_ROWS_PER_SHEET == 0:
            sheet = workbook.create_sheet(f"usage-{count // XLSX_ROWS_PER_SHEET + 1}")
            sheet.append(HEADER)
        sheet.append([_iso(v) if isinstance(v, datetime) else v for v in row])  # type: ignore[union-attr]
        count += 1
    if sheet is None:
        workbook.create_sheet("usage-1").append(HEADER)
    workbook.save(sink)
    return count


def xlsx_file(queryset: QuerySet[UsageRecord]) -> IO[bytes]:
    """The XLSX export in an anonymous temporary file (deleted on close), rewound."""
    handle = tempfile.TemporaryFile(suffix=".xlsx")  # noqa: SIM115 - the response closes it
    xlsx_write(queryset, handle)
    handle.seek(0)
    return handle

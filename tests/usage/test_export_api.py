"""SPEC §5 GET /ai/usage/export/?format=csv|xlsx: the list's filters, streamed, exact."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.http import FileResponse, StreamingHttpResponse
from openpyxl import load_workbook

from tests.core.test_auth import assert_error

from .conftest import UsageSpec

pytestmark = pytest.mark.django_db


def csv_rows(response) -> list[dict]:
    assert isinstance(response, StreamingHttpResponse)
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def xlsx_rows(response) -> list[dict]:
    assert isinstance(response, FileResponse)
    workbook = load_workbook(io.BytesIO(b"".join(response.streaming_content)), read_only=True)
    rows: list[dict] = []
    for sheet in workbook.worksheets:
        values = list(sheet.iter_rows(values_only=True))
        header = values[0]
        rows.extend(dict(zip(header, row, strict=True)) for row in values[1:])
    return rows


def as_decimal(value) -> Decimal:
    # XLSX numeric cells hold the exact decimal literal; openpyxl reads it as a float,
    # whose shortest repr is that literal again.
    return Decimal(str(value)).quantize(Decimal("0.000001"))


def totals(rows: list[dict]) -> tuple:
    return (
        len(rows),
        sum(as_decimal(r["total_cost"]) for r in rows),
        sum(int(r["total_tokens"]) for r in rows),
    )


def spec_totals(specs: list[UsageSpec]) -> tuple:
    return (
        len(specs),
        sum((s.total_cost for s in specs), Decimal(0)),
        sum(s.total_tokens for s in specs),
    )


@pytest.mark.parametrize("export_format", ["csv", "xlsx"])
def test_export_round_trips_the_brands_rows(api_client, usage_data, noise, export_format):
    response = api_client.get(f"/ai/usage/export/?format={export_format}")
    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"]
    rows = csv_rows(response) if export_format == "csv" else xlsx_rows(response)
    assert totals(rows) == spec_totals(usage_data.specs)
    assert {r["job_id"] for r in rows} == {s.job_id for s in usage_data.specs}
    by_id = {s.job_id: s for s in usage_data.specs}
    for row in rows:
        spec = by_id[row["job_id"]]
        assert as_decimal(row["total_cost"]) == spec.total_cost
        assert row["model_name"] == spec.model_name


def test_csv_money_is_the_exact_six_decimal_string(api_client, usage_data):
    rows = csv_rows(api_client.get("/ai/usage/export/?format=csv"))
    by_id = {s.job_id: s for s in usage_data.specs}
    for row in rows:
        assert row["total_cost"] == f"{by_id[row['job_id']].total_cost:.6f}"
        spec = by_id[row["job_id"]]
        assert row["quality_score"] == (
            "" if spec.quality_score is None else f"{spec.quality_score}"
        )


@pytest.mark.parametrize("export_format", ["csv", "xlsx"])
def test_export_timestamps_are_written_as_the_list_writes_them(
    api_client, usage_data, export_format
):
    listed = {
        r["job_id"]: r["created_at"]
        for r in api_client.get("/ai/usage/?page_size=500").json()["results"]
    }
    response = api_client.get(f"/ai/usage/export/?format={export_format}")
    rows = csv_rows(response) if export_format == "csv" else xlsx_rows(response)
    assert rows
    for row in rows:
        assert row["created_at"] == listed[row["job_id"]]
        assert row["created_at"].endswith("Z")


@pytest.mark.parametrize("export_format", ["csv", "xlsx"])
@pytest.mark.parametrize(
    ("query", "predicate"),
    [
        ("model_name__in=o3,gpt-4o", lambda s: s.model_name in ("o3", "gpt-4o")),
        (
            "total_cost__gte=0.05&generation=new",
            lambda s: s.total_cost >= Decimal("0.05") and s.generation == "new",
        ),
        ("quality_score__gte=5", lambda s: s.quality_score is not None and s.quality_score >= 5),
    ],
)
def test_export_applies_the_list_filters(
    api_client, usage_data, noise, export_format, query, predicate
):
    response = api_client.get(f"/ai/usage/export/?format={export_format}&{query}")
    rows = csv_rows(response) if export_format == "csv" else xlsx_rows(response)
    wanted = [s for s in usage_data.specs if predicate(s)]
    assert wanted
    assert totals(rows) == spec_totals(wanted)
    listed = api_client.get(f"/ai/usage/?{query}").json()["count"]
    assert listed == len(rows)


def test_export_follows_the_list_ordering(api_client, usage_data):
    rows = csv_rows(api_client.get("/ai/usage/export/?format=csv&ordering=-total_cost"))
    costs = [Decimal(r["total_cost"]) for r in rows]
    assert costs == sorted(costs, reverse=True)


def test_export_with_an_unknown_ordering_field_is_400_not_a_file(api_client, usage_data):
    response = api_client.get("/ai/usage/export/?format=csv&ordering=-cost")
    assert response.status_code == 400
    body = response.json()
    assert body["error_code"] == "VALIDATION_ERROR"
    assert "total_cost" in body["suggestions"]


@pytest.mark.parametrize("export_format", ["csv", "xlsx"])
def test_export_with_a_date_out_of_range_in_utc_is_400_not_a_cut_file(
    api_client, usage_data, export_format
):
    response = api_client.get(
        f"/ai/usage/export/?format={export_format}&created_at__lte=9999-12-31T23:59:59-01:00"
    )
    assert response.status_code == 400
    assert response.json()["field_errors"]["created_at__lte"]


def test_other_brand_exports_only_its_rows(other_client, usage_data, noise):
    rows = csv_rows(other_client.get("/ai/usage/export/"))
    assert totals(rows) == spec_totals(noise.specs)


def test_empty_export_has_the_header_only(api_client, brand, job_types):
    assert csv_rows(api_client.get("/ai/usage/export/?format=csv")) == []
    assert xlsx_rows(api_client.get("/ai/usage/export/?format=xlsx")) == []


@pytest.mark.parametrize("export_format", ["json", "pdf", "CSV"])
def test_unknown_format_is_400(api_client, usage_data, export_format):
    body = assert_error(
        api_client.get(f"/ai/usage/export/?format={export_format}"), 400, "VALIDATION_ERROR"
    )
    assert "format" in body["field_errors"]


def test_bad_filter_on_export_is_400(api_client, usage_data):
    assert_error(
        api_client.get("/ai/usage/export/?format=csv&total_cost__gte=abc"), 400, "VALIDATION_ERROR"
    )

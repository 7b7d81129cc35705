"""The set-up commands: clear output, and idempotency (a second run changes no row)."""

from io import StringIO

import pytest
from django.core.management import call_command

from ai_core.models import AIJobCategory, AIJobType
from ai_openai.models import AIModel
from ai_providers.models import Provider

pytestmark = pytest.mark.django_db

SEEDED = (Provider, AIModel, AIJobCategory, AIJobType)
O3_MODELS = {"o3", "o3-mini", "o4-mini"}
O3_JOB_TYPES = {"complex_reasoning", "deep_analysis", "cost_optimized_reasoning"}


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def snapshot() -> dict[str, list[dict]]:
    """Every seeded row with every column (``updated_at`` included), in pk order."""
    return {m.__name__: list(m.objects.order_by("pk").values()) for m in SEEDED}


def table(output: str) -> dict[str, tuple[int, int]]:
    rows = {}
    for line in output.splitlines():
        words = line.split()
        if len(words) >= 3 and words[-1].isdigit() and words[-2].isdigit():
            rows[" ".join(words[:-2])] = (int(words[-2]), int(words[-1]))
    return rows


def test_setup_ai_infrastructure_creates_everything_and_reports_it():
    output = run("setup_ai_infrastructure", "--include-o3")

    assert table(output) == {
        "providers": (4, 0),
        "models": (8, 0),
        "job categories": (4, 0),
        "job types": (9, 0),
    }
    assert output.strip().endswith("changed")
    assert set(AIModel.objects.values_list("name", flat=True)) >= O3_MODELS
    assert set(AIJobType.objects.values_list("code", flat=True)) >= O3_JOB_TYPES


def test_setup_ai_infrastructure_twice_changes_nothing():
    run("setup_ai_infrastructure", "--include-o3")
    before = snapshot()

    output = run("setup_ai_infrastructure", "--include-o3")

    assert table(output) == {
        "providers": (0, 0),
        "models": (0, 0),
        "job categories": (0, 0),
        "job types": (0, 0),
    }
    assert output.strip().endswith("already up to date")
    assert snapshot() == before


def test_setup_ai_infrastructure_without_o3_leaves_the_o3_family_out():
    run("setup_ai_infrastructure")

    assert not AIModel.objects.filter(is_o3_family=True).exists()
    assert not AIJobType.objects.filter(code__in=O3_JOB_TYPES).exists()


def test_setup_ai_job_types_reports_categories_and_job_types_apart():
    output = run("setup_ai_job_types")

    assert table(output) == {"job categories": (4, 0), "job types": (6, 0)}
    assert output.strip().endswith("changed")
    assert AIJobCategory.objects.count() == 4
    assert AIJobType.objects.count() == 6


def test_setup_ai_job_types_twice_changes_nothing():
    first = run("setup_ai_job_types", "--include-o3")
    before = snapshot()

    second = run("setup_ai_job_types", "--include-o3")

    assert table(first) == {"job categories": (4, 0), "job types": (9, 0)}
    assert table(second) == {"job categories": (0, 0), "job types": (0, 0)}
    assert second.strip().endswith("already up to date")
    assert snapshot() == before


def test_setup_ai_job_types_restores_an_edited_type():
    run("setup_ai_job_types")
    AIJobType.objects.filter(code="translation").update(is_active=False, name="Edited")

    output = run("setup_ai_job_types")

    assert table(output) == {"job categories": (0, 0), "job types": (0, 1)}
    assert AIJobType.objects.get(code="translation").is_active


def test_setup_ai_job_types_counts_a_restored_category_as_a_category():
    run("setup_ai_job_types")
    AIJobCategory.objects.filter(code="analysis").update(name="Edited")

    output = run("setup_ai_job_types")

    assert table(output) == {"job categories": (0, 1), "job types": (0, 0)}
    assert AIJobCategory.objects.get(code="analysis").name == "Analysis"


def test_setup_commands_explain_themselves_in_help(capsys):
    for command in ("setup_ai_infrastructure", "setup_ai_job_types", "migrate_to_o3_support"):
        with pytest.raises(SystemExit) as exit_info:
            call_command(command, "--help")
        assert exit_info.value.code == 0
        assert "Idempotent" in capsys.readouterr().out.replace("\n", " ")

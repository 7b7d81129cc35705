"""migrate_to_o3_support: an install without o3 gets the o3 models, enabled, and the
reasoning job types; a second run changes nothing; AI_ENABLE_O3=false is warned about."""

import pytest

from ai_core.models import AIJobType
from ai_openai.models import AIModel
from ai_openai.registry import ai_model_list
from ai_providers.budget_models import BrandQuota

from .test_setup_commands import O3_JOB_TYPES, O3_MODELS, run, snapshot, table

pytestmark = pytest.mark.django_db


@pytest.fixture
def install_without_o3():
    run("setup_ai_infrastructure")
    assert not AIModel.objects.filter(is_o3_family=True).exists()


def test_adds_the_o3_models_and_job_types(install_without_o3, brand):
    output = run("migrate_to_o3_support")

    assert table(output) == {
        "providers": (0, 0),
        "o3 models": (3, 0),
        "job categories": (0, 0),
        "job types": (3, 0),
    }
    assert "changed" in output.splitlines()
    available = set(ai_model_list(available_only=True).values_list("name", flat=True))
    assert available >= O3_MODELS
    assert set(AIJobType.objects.filter(is_active=True).values_list("code", flat=True)) >= (
        O3_JOB_TYPES
    )
    assert "AI_ENABLE_O3 is true" in output
    # The o3 limits in force for each brand are listed (the settings' defaults here).
    acme = next(line for line in output.splitlines() if line.startswith("acme "))
    assert acme.split()[1:] == ["100.00", "100000000"]


def test_enables_o3_models_that_were_disabled(install_without_o3):
    run("migrate_to_o3_support")
    AIModel.objects.filter(name__in=["o3", "o4-mini"]).update(enabled=False)
    AIJobType.objects.filter(code="deep_analysis").update(is_active=False)

    output = run("migrate_to_o3_support")

    assert table(output)["o3 models"] == (0, 2)
    assert table(output)["job types"] == (0, 1)
    assert "enabled: o3, o4-mini" in output
    assert set(AIModel.objects.filter(enabled=True).values_list("name", flat=True)) >= O3_MODELS
    assert AIJobType.objects.get(code="deep_analysis").is_active


def test_second_run_changes_nothing(install_without_o3):
    run("migrate_to_o3_support")
    before = snapshot()

    output = run("migrate_to_o3_support")

    assert set(table(output).values()) == {(0, 0)}
    assert "already up to date" in output
    assert snapshot() == before


def test_dry_run_saves_nothing(install_without_o3):
    before = snapshot()

    output = run("migrate_to_o3_support", "--dry-run")

    assert table(output)["o3 models"] == (3, 0)
    assert "dry run: nothing was saved" in output
    assert snapshot() == before


def test_warns_when_o3_is_switched_off(install_without_o3, settings):
    settings.AI_ENABLE_O3 = False

    output = run("migrate_to_o3_support")

    assert "WARNING: AI_ENABLE_O3 is false" in output
    assert AIModel.objects.filter(is_o3_family=True, enabled=True).count() == 3


def test_warns_about_a_brand_whose_o3_limit_is_zero(install_without_o3, brand):
    BrandQuota.objects.create(brand=brand, o3_daily_budget=0)

    output = run("migrate_to_o3_support")

    assert "WARNING: brand acme has a zero o3 limit" in output

"""Every example of docs/examples/workflows.md runs against the live service and works.

Each fenced block tagged ``title="…"`` is one test: bash blocks run with ``bash -euo
pipefail`` (curl and jq), python blocks with this interpreter; both get ``BASE_URL``,
``TOKEN``, ``BRAND``, ``MEGAHUB_USERNAME`` and ``MEGAHUB_PASSWORD`` in the environment.
A block must exit 0 and print its ``expect="…"`` text.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from rest_framework_simplejwt.tokens import AccessToken

from ai_core.models import BrandMembership
from tests.factories import make_member

WORKFLOWS = Path(__file__).resolve().parents[2] / "docs" / "examples" / "workflows.md"
FENCE = re.compile(r"^```(?P<lang>bash|python)(?P<info>[^\n]*)\n(?P<code>.*?)^```\s*$", re.M | re.S)
ATTRIBUTE = re.compile(r'(\w+)="([^"]*)"')
PASSWORD = "docs-example-password-1"
# The seed's workflows and quick starts: removing one from the docs fails here.
REQUIRED = {
    "get-token",
    "o3-analysis",
    "o3-analysis-python",
    "o3-mini-cost",
    "gpt41-creative",
    "recommend-model",
    "monitoring",
    "monitoring-python",
    "openai-sdk-gateway",
    "error-handling",
}


@dataclass(frozen=True)
class Example:
    title: str
    lang: str
    code: str
    expect: str


def examples() -> list[Example]:
    found = []
    for match in FENCE.finditer(WORKFLOWS.read_text()):
        attributes = dict(ATTRIBUTE.findall(match["info"]))
        if "title" in attributes:
            found.append(
                Example(
                    attributes["title"], match["lang"], match["code"], attributes.get("expect", "")
                )
            )
    return found


def test_the_seeds_workflows_are_documented_once_each():
    titles = [example.title for example in examples()]
    assert len(titles) == len(set(titles))
    assert set(titles) >= REQUIRED
    assert all(example.expect for example in examples())


@pytest.fixture
def service(live_server, brand, chat_ready, fake_openai) -> dict[str, str]:
    user = make_member(brand, role=BrandMembership.Role.ADMIN)
    user.set_password(PASSWORD)
    user.save()
    return {
        "BASE_URL": live_server.url,
        "TOKEN": str(AccessToken.for_user(user)),
        "BRAND": brand.slug,
        "MEGAHUB_USERNAME": user.get_username(),
        "MEGAHUB_PASSWORD": PASSWORD,
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("example", examples(), ids=lambda example: example.title)
def test_workflow_example_runs(example: Example, service: dict[str, str]):
    if example.lang == "bash":
        for tool in ("curl", "jq"):
            assert shutil.which(tool), f"the bash examples need {tool}"
        command = ["bash", "-euo", "pipefail", "-c", example.code]
    else:
        command = [sys.executable, "-c", example.code]
    result = subprocess.run(
        command,
        env={**os.environ, **service},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{example.title} failed:\n{output[-3000:]}"
    assert example.expect in result.stdout, f"{example.title} printed:\n{output[-3000:]}"

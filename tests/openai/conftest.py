from __future__ import annotations

import pytest

from ai_openai.models import AIModel
from ai_openai.registry import registry_seed


@pytest.fixture
def registry(db) -> dict[str, AIModel]:
    """The seeded registry (o3 family included), by model name."""
    registry_seed(include_o3=True)
    return {m.name: m for m in AIModel.objects.all()}


@pytest.fixture
def small_model(registry) -> AIModel:
    """A chat model with a tiny context window, for context-length arithmetic."""
    model = registry["gpt-4o"]
    model.pk = None
    model.name = "tiny-chat"
    model.context_window = 60
    model.max_output_tokens = 20
    model.save()
    return model

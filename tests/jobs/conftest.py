from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from ai_core import handlers
from ai_core.handlers import HandlerResult, JobHandler, JobRunContext
from ai_core.services.job_types import job_types_seed


@pytest.fixture
def job_types(db) -> None:
    job_types_seed(include_o3=True)


@pytest.fixture
def test_handler(job_types) -> Iterator[dict]:
    """Route the ``chat_completion`` handler to a scripted one for workflow tests.

    ``state["behaviour"]`` (a callable taking the context) decides what a run does;
    ``state["runs"]`` counts runs.
    """
    state: dict = {"runs": 0, "behaviour": None, "finalized": 0, "released": 0}

    def run(context: JobRunContext) -> HandlerResult:
        state["runs"] += 1
        behaviour: Callable | None = state["behaviour"]
        if behaviour is not None:
            return behaviour(context)
        return HandlerResult(
            result={"content": f"done {context.job.public_id}"},
            finalize=lambda job: state.__setitem__("finalized", state["finalized"] + 1),
        )

    def release(job) -> None:
        state["released"] += 1

    previous = handlers.get_handler("chat_completion")
    handlers.register_handler(JobHandler(name="chat_completion", run=run, release=release))
    yield state
    if previous is not None:
        handlers.register_handler(previous)
    else:
        handlers._HANDLERS.pop("chat_completion", None)

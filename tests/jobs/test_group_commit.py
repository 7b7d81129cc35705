"""Group commit (ai_core/groupcommit.py): completions that end together share one
transaction, and each caller returns only once its own is written."""

from __future__ import annotations

import threading
import time

import pytest

from ai_core.groupcommit import GroupCommit
from ai_core.handlers import HandlerResult
from tests.threads import run_threads


def test_items_submitted_during_a_write_are_written_together_by_the_next_leader():
    first_started = threading.Event()
    release_first = threading.Event()
    batches: list[list[int]] = []
    written: set[int] = set()

    def write(items: list[int]) -> None:
        batches.append(list(items))
        if len(batches) == 1:
            first_started.set()
            assert release_first.wait(10)
        written.update(items)

    group = GroupCommit(write)
    returned_unwritten: list[int] = []

    def submit(item: int) -> None:
        group.submit(item)
        if item not in written:
            returned_unwritten.append(item)

    leader = threading.Thread(target=submit, args=(0,))
    leader.start()
    assert first_started.wait(10)
    # Ten more arrive while the first write is in progress: they wait, then go as one.
    waiting = threading.Thread(target=lambda: run_threads(10, lambda i: submit(i + 1)))
    waiting.start()
    deadline = time.monotonic() + 10
    while len(group._pending) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(group._pending) == 10
    release_first.set()
    leader.join(10)
    waiting.join(10)
    assert batches[0] == [0]
    assert sorted(batches[1]) == list(range(1, 11))
    assert len(batches) == 2
    assert returned_unwritten == []
    assert (group.batches, group.items) == (2, 11)


def test_a_thread_alone_writes_at_once():
    batches: list[list[str]] = []
    group = GroupCommit(batches.append)
    group.submit("a")
    group.submit("b")
    assert batches == [["a"], ["b"]]


def test_a_failed_write_raises_in_every_submitter_of_its_batch_and_the_next_batch_runs():
    gate = threading.Event()
    calls = 0

    def write(items: list[int]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            assert gate.wait(10)
            raise RuntimeError("disk full")

    group = GroupCommit(write)
    errors: list[BaseException] = []
    first = threading.Thread(target=lambda: errors.extend(run_threads(1, group.submit)))
    first.start()
    while not group._writing:
        time.sleep(0.005)
    gate.set()
    first.join(10)
    assert [str(e) for e in errors] == ["disk full"]
    group.submit(7)  # the group is usable again
    assert calls == 2


@pytest.mark.django_db(transaction=True)
def test_one_bad_completion_in_a_batch_fails_only_its_own_job(
    brand, test_handler, slow_first_batch
):
    """The batch rolls back whole, then each completion is written alone: the bad one
    fails its job (internal error), the others complete with what they wrote."""
    from django.db.models import F

    from ai_core.models import AIJob
    from ai_core.services.jobs import ai_job_create, ai_job_run_started, job_owner

    def behaviour(ctx):
        def finalize(job):
            if job.input["text"] == "bad":
                raise RuntimeError("constraint violated")
            # Runs twice for the good ones (in the batch, rolled back, then alone).
            AIJob.objects.filter(pk=job.pk).update(requeues=F("requeues") + 1)

        return HandlerResult(result={"ok": ctx.job.input["text"]}, finalize=finalize)

    test_handler["behaviour"] = behaviour
    owner = job_owner()
    texts = ["good-0", "good-1", "bad", "good-2", "good-3", "good-4"]
    jobs = [
        ai_job_create(
            brand=brand,
            user=None,
            job_type="content_analysis",
            input={"text": text},
            dispatch=False,
            run_owner=owner,
        )
        for text in texts
    ]
    ended: dict[str, AIJob | None] = {}

    def run(index: int) -> None:
        if index:
            time.sleep(0.1)  # behind the first, held, batch
        ended[texts[index]] = ai_job_run_started(job=jobs[index], owner=owner)

    assert run_threads(len(jobs), run) == []
    assert slow_first_batch[0] == 1
    assert max(slow_first_batch) > 1
    rows = {job.input["text"]: job for job in AIJob.objects.filter(brand=brand)}
    assert rows["bad"].status == "failed"
    assert rows["bad"].error["error_code"] == "INTERNAL_ERROR"
    assert rows["bad"].requeues == 0
    for text in texts:
        if text != "bad":
            assert rows[text].status == "completed", text
            assert rows[text].result == {"ok": text}
            assert rows[text].requeues == 1  # its finalize committed once
            assert ended[text].status == "completed"


@pytest.mark.django_db(transaction=True)
def test_with_group_commit_off_each_completion_has_its_own_transaction(
    brand, test_handler, slow_first_batch, settings
):
    from ai_core.models import AIJob
    from ai_core.services.jobs import ai_job_create, ai_job_run_started, job_owner

    settings.AI_GROUP_COMMIT = False
    owner = job_owner()
    jobs = [
        ai_job_create(
            brand=brand,
            user=None,
            job_type="content_analysis",
            input={"text": str(i)},
            dispatch=False,
            run_owner=owner,
        )
        for i in range(4)
    ]
    for job in jobs[:2]:
        assert ai_job_run_started(job=job, owner=owner).status == "completed"
    assert slow_first_batch == []  # the group commit was not used
    settings.AI_GROUP_COMMIT = True
    for job in jobs[2:]:
        assert ai_job_run_started(job=job, owner=owner).status == "completed"
    assert slow_first_batch == [1, 1]  # used, each alone (one thread)
    assert AIJob.objects.filter(brand=brand, status="completed").count() == 4


def test_only_threads_that_wait_for_another_write_call_before_wait():
    """Waiting threads give their pooled connection back first (``before_wait``): else,
    with the pool's connections all held by waiters, the leader could not get one."""
    first_started = threading.Event()
    release_first = threading.Event()
    waited: list[str] = []

    def write(items: list[str]) -> None:
        if items == ["leader"]:
            first_started.set()
            assert release_first.wait(10)

    group = GroupCommit(write, before_wait=lambda: waited.append(threading.current_thread().name))
    group.submit("alone")  # nothing in progress: no wait, no call
    assert waited == []
    leader = threading.Thread(target=group.submit, args=("leader",), name="leader")
    leader.start()
    assert first_started.wait(10)
    followers = [
        threading.Thread(target=group.submit, args=(f"f{i}",), name=f"f{i}") for i in range(3)
    ]
    for thread in followers:
        thread.start()
    deadline = time.monotonic() + 10
    while len(group._pending) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    release_first.set()
    for thread in [leader, *followers]:
        thread.join(10)
    assert sorted(waited) == ["f0", "f1", "f2"]

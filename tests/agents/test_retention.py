from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from agents.maintenance import purge_old_traces, traces_purge
from agents.models import Run, Step
from tests.factories import RunFactory, WorkflowFactory, WorkItemFactory

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def _run(workflow, *, finished_days_ago: int, state: dict | None = None) -> Run:
    finished = NOW - dt.timedelta(days=finished_days_ago)
    return RunFactory(
        work_item=WorkItemFactory(workflow=workflow),
        finished_at=finished,
        state=state if state is not None else {"messages": ["a long conversation"]},
    )


def _steps(run: Run, *, days_ago: int, count: int = 1) -> list[int]:
    start = run.steps.count()
    steps = [
        Step.objects.create(run=run, index=start + n, kind=Step.Kind.TOOL_CALL, name="get_order")
        for n in range(count)
    ]
    ids = [step.pk for step in steps]
    Step.objects.filter(pk__in=ids).update(created_at=NOW - dt.timedelta(days=days_ago))
    return ids


@pytest.fixture
def refunds(db):
    return WorkflowFactory(slug="refunds", trace_retention_days=30)


def test_only_steps_older_than_the_retention_are_purged(refunds):
    run = _run(refunds, finished_days_ago=40)
    old = _steps(run, days_ago=40, count=3)
    recent = _steps(run, days_ago=29, count=2)

    counts = traces_purge(now=NOW)

    assert counts["steps_deleted"] == 3
    assert not Step.objects.filter(pk__in=old).exists()
    assert Step.objects.filter(pk__in=recent).count() == 2
    # The run itself is evidence and stays; its bulky state is emptied.
    run.refresh_from_db()
    assert run.state == {}


def test_each_workflow_keeps_its_own_retention(refunds):
    long_keeper = WorkflowFactory(slug="access", trace_retention_days=365)
    forever = WorkflowFactory(slug="crm", trace_retention_days=0)
    refunds_steps = _steps(_run(refunds, finished_days_ago=100), days_ago=100)
    access_steps = _steps(_run(long_keeper, finished_days_ago=100), days_ago=100)
    crm_steps = _steps(_run(forever, finished_days_ago=1000), days_ago=1000)

    counts = traces_purge(now=NOW)

    assert counts == {"workflows": 2, "steps_deleted": 1, "runs_cleared": 1}
    assert not Step.objects.filter(pk__in=refunds_steps).exists()
    assert Step.objects.filter(pk__in=access_steps).exists()
    assert Step.objects.filter(pk__in=crm_steps).exists()


def test_recent_and_unfinished_runs_keep_their_state(refunds):
    recent = _run(refunds, finished_days_ago=5, state={"keep": True})
    unfinished = RunFactory(work_item=WorkItemFactory(workflow=refunds), state={"live": 1})

    traces_purge(now=NOW)

    recent.refresh_from_db()
    unfinished.refresh_from_db()
    assert recent.state == {"keep": True}
    assert unfinished.state == {"live": 1}


def test_purging_works_in_batches(refunds):
    run = _run(refunds, finished_days_ago=60)
    _steps(run, days_ago=60, count=7)

    counts = traces_purge(now=NOW, batch_size=2)

    assert counts["steps_deleted"] == 7
    assert not run.steps.exists()


def test_a_second_purge_finds_nothing_more(refunds):
    _steps(_run(refunds, finished_days_ago=60), days_ago=60, count=2)
    traces_purge(now=NOW)
    assert traces_purge(now=NOW) == {"workflows": 1, "steps_deleted": 0, "runs_cleared": 0}


def test_the_celery_task_purges_with_the_current_time(refunds):
    run = _run(refunds, finished_days_ago=0)
    old = _steps(run, days_ago=0)
    Step.objects.filter(pk__in=old).update(created_at=timezone.now() - dt.timedelta(days=31))
    kept = Step.objects.create(run=run, index=99, kind=Step.Kind.NOTE, name="fresh")

    result = purge_old_traces.apply().get()

    assert result["steps_deleted"] == 1
    assert list(run.steps.values_list("pk", flat=True)) == [kept.pk]

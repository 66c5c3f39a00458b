from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from agents.maintenance import purge_old_traces, traces_purge
from agents.models import Run, Step
from governance.models import AuditEvent
from tests.agents.stub_openai import stub_openai_fixture  # noqa: F401 - a fixture
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
    events = AuditEvent.objects.filter(action="agents.traces.purged").order_by("workflow__slug")
    assert [(e.workflow.slug, e.data["steps_deleted"]) for e in events] == [
        ("access", 0),
        ("refunds", 1),
    ]
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


# --- personal values: retention per workflow and kind of record (evidence.privacy) ----


def test_after_their_retention_personal_values_are_gone_and_the_evidence_counts_stay(
    stub_openai,
):
    from evidence.privacy import retention_apply
    from governance import privacy
    from governance.models import AuditEvent, DataSubject
    from reviews.models import Decision
    from tests.evidence import test_privacy_erasure as erasure

    days = 30
    policy = {
        **erasure.POLICY,
        "retention_days": dict.fromkeys(privacy.KINDS, days),
    }
    seeded = erasure._seed(stub_openai, policy=policy, trace_retention_days=days)
    workflow = seeded["workflow"]
    values = [*erasure.CORA.values(), *erasure.BOB.values()]
    before = erasure._numbers(workflow)
    # The clock, frozen a day short of the retention: nothing goes.
    start = timezone.now()
    early = retention_apply(now=start + dt.timedelta(days=days - 1))
    assert sum(early["expired"].values()) == 0
    assert (
        privacy.reveal(WorkItemFactory._meta.model.objects.get(external_id="t-200").payload)[
            "email"
        ]
        == erasure.BOB["email"]
    )

    # A day past it: every personal value goes, rows stay.
    later = start + dt.timedelta(days=days + 1)
    result = retention_apply(now=later)
    traces_purge(now=later)

    expired = result["expired"]
    assert expired["work_items"] == 3
    assert expired["proposals"] >= 1
    assert expired["packets"] == 1
    assert expired["eval_cases"] == 2
    # No readable token left anywhere: the updatable records hold "[expired]", and the
    # subjects (last seen past every kind's retention) have lost their keys, which
    # reaches the decisions the database keeps append-only.
    assert not DataSubject.objects.filter(wrapped_key__isnull=False).exists()
    edited = Decision.objects.get(verdict="edit")
    assert "[pii:" in json.dumps(edited.final_arguments)
    assert privacy.reveal(edited.final_arguments)["to"] == privacy.ERASED
    assert erasure._found_in_database(values) == []
    # Tokens are left only where the database refuses an update (decisions, the audit
    # log: a decision's event carries its diff): their keys are gone.
    with_tokens = {table for table, _, _ in erasure._found_in_database(["[pii:"])}
    assert with_tokens <= {"reviews_decision", "reviews_undonedecision", "console_auditevent"}
    # The evidence is the same: counts, verdicts, costs, the gate.
    assert erasure._numbers(workflow)["rows"] == {**before["rows"], "Step": 0}
    assert erasure._numbers(workflow)["gate"] == before["gate"]
    # One audit event per run, counts only.
    event = AuditEvent.objects.filter(action="privacy.retention.applied").latest("pk")
    assert event.data["expired"]["work_items"] == 3
    assert event.data["subjects_shredded"] == 2
    assert not any(v.lower() in json.dumps(event.data).lower() for v in values)


def test_retention_keeps_values_of_kinds_without_a_rule(stub_openai):
    from evidence.privacy import retention_apply
    from governance import privacy
    from tests.evidence import test_privacy_erasure as erasure

    policy = {**erasure.POLICY, "retention_days": {"packets": 7}}
    seeded = erasure._seed(stub_openai, policy=policy)
    result = retention_apply(now=timezone.now() + dt.timedelta(days=8))

    assert result["expired"]["packets"] == 1
    assert "work_items" not in result["expired"]
    item = WorkItemFactory._meta.model.objects.get(pk=seeded["cora"].pk)
    assert privacy.reveal(item.payload)["email"] == erasure.CORA["email"]

"""Every run ends: a run that crashes is tried again a bounded number of times
(``TENURE_RUN_MAX_ATTEMPTS``, counted on the run) and then becomes an escalation
with its error (a dead letter); never an item left ``running``, never a model paid
on every sweep.

These tests commit (transactional): the runner writes in autocommit in production,
and a statement PostgreSQL refuses must be seen as it is there."""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from agents import queue, services
from agents.models import Escalation, Run, Step, WorkItem
from agents.runner import ERR_WORKER_LOST, WORKER_LOST, Runner, run_work_item
from agents.services import STRANDED_AFTER, stranded_redispatch
from governance.models import AuditEvent
from tests.agents.stub_openai import (  # noqa: F401 - fixtures
    SCRIPTS,
    call,
    final,
    make_item,
    make_refund_workflow,
    stub_openai_env_fixture,
    stub_openai_fixture,
)
from tests.conftest import WorkerProcess, sent_args

pytestmark = pytest.mark.django_db(transaction=True)

NAN_REFUND = '{"order_number": "A-1001", "amount": NaN, "reason": "Arrived broken"}'


@pytest.fixture(autouse=True)
def _three_attempts(settings):
    settings.TENURE_RUN_MAX_ATTEMPTS = 3


def _age(item: WorkItem) -> None:
    """Make the item's run look abandoned to the sweeper and to the next claim."""
    old = timezone.now() - STRANDED_AFTER - timedelta(hours=1)
    WorkItem.objects.filter(pk=item.pk).update(updated_at=old)
    Run.objects.filter(work_item=item, status=Run.Status.RUNNING).update(started_at=old)


def _sweep_and_run(item: WorkItem, sent_tasks: list) -> list[int]:
    """One round of the stranded-work sweeper, then a worker running what it sent."""
    _age(item)
    sent_tasks.clear()
    stranded_redispatch()
    sent = sent_args(sent_tasks, queue.RUN_AGENT)
    for item_id in sent:
        run_work_item(work_item_id=item_id)
    return sent


def test_a_nan_amount_from_the_model_ends_as_an_escalation_not_running(stub_openai, monkeypatch):
    """The trace insert and the crash handler both failed on the NaN: the item stayed
    'running' for good, with no escalation."""
    monkeypatch.setitem(SCRIPTS, "nan_amount", [{"calls": [call("create_refund", NAN_REFUND)]}])
    workflow = make_refund_workflow()
    item = make_item(workflow, "nan_amount")

    run = run_work_item(work_item_id=item.pk)

    item.refresh_from_db()
    assert item.status == WorkItem.Status.ESCALATED
    assert run.status == Run.Status.ESCALATED
    escalation = Escalation.objects.get(work_item=item)
    assert escalation.status == Escalation.Status.OPEN
    assert not Run.objects.filter(status=Run.Status.RUNNING).exists()
    # The model's NaN is kept in the trace as what it was: a name, not a number.
    validation = run.steps.filter(kind=Step.Kind.VALIDATION).first()
    assert validation is not None
    assert validation.input["amount"] == "NaN"


def test_a_nan_in_any_tool_argument_ends_the_item(stub_openai, monkeypatch):
    """A declared tool's number: validation refuses the NaN, and its record (the
    validation step, which PostgreSQL refused before) no longer fails on it."""
    from agents.models import RiskClass, ToolDefinition
    from governance.models import ToolGrant

    monkeypatch.setitem(
        SCRIPTS,
        "nan_weight",
        [{"calls": [call("record_weight", '{"order_number": "A-1001", "weight": NaN}')]}, final()],
    )
    workflow = make_refund_workflow()
    ToolDefinition.objects.create(
        workflow=workflow,
        name="record_weight",
        description="Record a parcel's weight.",
        parameters={
            "type": "object",
            "properties": {"order_number": {"type": "string"}, "weight": {"type": "number"}},
            "required": ["order_number", "weight"],
        },
        risk_class=RiskClass.WRITE,
        endpoint_url="http://127.0.0.1:9/weight",
    )
    ToolGrant.objects.create(workflow=workflow, tool="record_weight", autonomy_level="shadow")
    item = make_item(workflow, "nan_weight")

    for _ in range(3):
        run_work_item(work_item_id=item.pk)
        item.refresh_from_db()
        if item.status != WorkItem.Status.RUNNING:
            break

    assert item.status == WorkItem.Status.ESCALATED
    assert not Run.objects.filter(work_item=item, status=Run.Status.RUNNING).exists()


def _redaction_breaks_on_model_output(monkeypatch) -> None:
    from agents import runner as runner_module

    real = runner_module.redact

    def broken(value: Any) -> Any:
        if isinstance(value, dict) and "tool_calls" in value:
            raise RecursionError("maximum recursion depth exceeded")
        return real(value)

    monkeypatch.setattr(runner_module, "redact", broken)


def test_a_run_whose_redaction_crashes_is_tried_three_times_then_dead_lettered(
    stub_openai, monkeypatch
):
    _redaction_breaks_on_model_output(monkeypatch)
    monkeypatch.setattr(Runner, "use_model_cache", False)  # count every call the model gets
    workflow = make_refund_workflow()
    item = make_item(workflow, "good")

    first = run_work_item(work_item_id=item.pk)
    # Released for another attempt: no lease, no start time, the error and spend kept.
    assert first.status == Run.Status.RUNNING
    assert Run.objects.get(pk=first.pk).tokens_in == 350
    assert first.retry_in > 0
    assert first.started_at is None
    assert first.state["crashes"][0]["error_class"] == "RecursionError"
    item.refresh_from_db()
    assert item.status == WorkItem.Status.RUNNING
    assert not Escalation.objects.exists()

    second = run_work_item(work_item_id=item.pk)
    assert second.status == Run.Status.RUNNING
    third = run_work_item(work_item_id=item.pk)

    assert third.status == Run.Status.ESCALATED
    assert third.stop_reason == Run.StopReason.CRASHED
    assert third.starts == 3
    item.refresh_from_db()
    assert item.status == WorkItem.Status.ESCALATED
    escalation = Escalation.objects.get(work_item=item)
    assert escalation.reason == Escalation.Reason.DEAD_LETTER
    assert "RecursionError" in escalation.detail
    assert "TENURE_RUN_MAX_ATTEMPTS=3" in escalation.detail
    dead = escalation.packet["dead_letter"]
    assert dead["attempts"] == 3
    assert dead["max_attempts"] == 3
    assert dead["error_class"] == "RecursionError"
    assert dead["error_message"] == "maximum recursion depth exceeded"
    assert [e["attempt"] for e in dead["errors"]] == [1, 2, 3]
    assert AuditEvent.objects.filter(action="agent.run.escalated", object_id=str(third.pk)).exists()
    # One model call per attempt, and none after the last; every attempt's spend counts.
    assert len(stub_openai.requests) == 3
    assert third.tokens_in == 3 * 350
    assert Run.objects.get(pk=third.pk).cost_usd > 0
    assert run_work_item(work_item_id=item.pk) is None
    assert len(stub_openai.requests) == 3
    assert Run.objects.filter(work_item=item).count() == 1


def test_the_escalation_page_shows_the_dead_letter(stub_openai, monkeypatch, roles, client_for):
    from django.urls import reverse

    from governance.permissions import Role, workflow_grant_role
    from tests.factories import UserFactory

    _redaction_breaks_on_model_output(monkeypatch)
    workflow = make_refund_workflow()
    item = make_item(workflow, "good")
    for _ in range(3):
        run_work_item(work_item_id=item.pk)
    escalation = Escalation.objects.get(work_item=item)
    reviewer = UserFactory(username="rhea")
    reviewer.groups.add(roles[Role.REVIEWER])
    workflow_grant_role(user=reviewer, workflow=workflow, role=Role.REVIEWER)

    page = client_for(reviewer).get(
        reverse("review-escalation", args=[workflow.slug, escalation.pk])
    )

    assert page.status_code == 200
    body = page.content.decode()
    assert "Run crashed on every attempt (dead letter)" in body
    assert "started 3 times" in body
    assert "RecursionError" in body
    assert "TENURE_RUN_MAX_ATTEMPTS=3" in body


def test_the_sweeper_does_not_resend_a_dead_lettered_item(stub_openai, monkeypatch, sent_tasks):
    """Before: the sweeper re-sent the crashing item every two minutes, without end,
    paying the model each time."""
    _redaction_breaks_on_model_output(monkeypatch)
    monkeypatch.setattr(Runner, "use_model_cache", False)
    workflow = make_refund_workflow()
    item = make_item(workflow, "good")
    run_work_item(work_item_id=item.pk)

    rounds = 0
    for _ in range(6):
        if not _sweep_and_run(item, sent_tasks):
            break
        rounds += 1

    assert rounds == 2, "two more attempts, then nothing left to send"
    item.refresh_from_db()
    assert item.status == WorkItem.Status.ESCALATED
    assert Escalation.objects.get(work_item=item).reason == Escalation.Reason.DEAD_LETTER
    assert len(stub_openai.requests) == 3
    _age(item)
    assert stranded_redispatch() == {"items": 0, "actions": 0}


def test_a_run_whose_worker_died_on_its_last_attempt_is_dead_lettered_without_a_model_call(
    stub_openai, sent_tasks
):
    """A worker killed on every attempt (out of memory on the same item) records no
    error; the start count alone ends it."""
    workflow = make_refund_workflow()
    item = make_item(workflow, "good")
    Run.objects.create(
        work_item=item,
        status=Run.Status.RUNNING,
        starts=3,
        started_at=timezone.now(),
        state={"lease": "dead-worker"},
    )
    WorkItem.objects.filter(pk=item.pk).update(status=WorkItem.Status.RUNNING)

    assert _sweep_and_run(item, sent_tasks) == [item.pk]

    item.refresh_from_db()
    assert item.status == WorkItem.Status.ESCALATED
    escalation = Escalation.objects.get(work_item=item)
    assert escalation.reason == Escalation.Reason.DEAD_LETTER
    assert escalation.packet["dead_letter"]["error_class"] == WORKER_LOST
    assert escalation.packet["dead_letter"]["error_message"] == ERR_WORKER_LOST
    assert AuditEvent.objects.filter(action="agent.run.dead_lettered").exists()
    assert stub_openai.requests == []
    assert _sweep_and_run(item, sent_tasks) == []


def test_a_payload_nested_five_thousand_deep_ends_as_an_escalation(stub_openai):
    """Stored before the API refused it (or written by another way in): the run and
    its crash handler both failed on it and it stayed 'running'."""
    workflow = make_refund_workflow()
    item = make_item(workflow, "good")
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    WorkItem.objects.filter(pk=item.pk).update(payload={**item.payload, "deep": deep})

    for _ in range(3):
        run_work_item(work_item_id=item.pk)
        item.refresh_from_db()
        if item.status != WorkItem.Status.RUNNING:
            break

    assert item.status == WorkItem.Status.ESCALATED
    assert Escalation.objects.filter(work_item=item).exists()
    assert len(stub_openai.requests) <= 3 * 3  # at most three attempts of three turns


def test_the_task_tries_a_crashed_run_again_until_it_ends(stub_openai, monkeypatch):
    from agents.tasks import run_agent

    _redaction_breaks_on_model_output(monkeypatch)
    monkeypatch.setattr(Runner, "use_model_cache", False)
    workflow = make_refund_workflow()
    item = make_item(workflow, "good")

    run_agent.apply(args=(item.pk,))  # eager: each retry runs at once

    item.refresh_from_db()
    assert item.status == WorkItem.Status.ESCALATED
    assert Run.objects.get(work_item=item).starts == 3
    assert len(stub_openai.requests) == 3


def _wait_for(predicate, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_a_real_worker_killed_mid_run_is_recovered_by_the_sweeper(
    stub_openai_env, tmp_path, monkeypatch
):
    from tests.conftest import _purge_queue

    workflow = make_refund_workflow()
    _purge_queue()
    worker = WorkerProcess(tmp_path / "worker.log")
    worker.start()
    try:
        with transaction.atomic():
            item, _ = services.work_item_create(
                workflow=workflow,
                external_id="killed-1",
                payload={"text": "[scenario:slow] Order A-1001 arrived broken."},
                source="api",
            )
        # The first model call takes 2.5 s: the worker is killed while it waits.
        assert _wait_for(lambda: bool(stub_openai_env.scenario_requests("slow")))
        worker.kill(signal.SIGKILL)
    finally:
        worker.stop()
    _purge_queue()  # the broker lost the unacknowledged task too
    item.refresh_from_db()
    assert item.status == WorkItem.Status.RUNNING
    assert Run.objects.get(work_item=item).starts == 1

    sent_tasks: list = []
    monkeypatch.setattr("agents.queue.send", lambda name, *args: sent_tasks.append((name, args)))
    assert _sweep_and_run(item, sent_tasks) == [item.pk]

    item.refresh_from_db()
    assert item.status == WorkItem.Status.AWAITING_REVIEW
    run = Run.objects.get(work_item=item)
    assert run.starts == 2
    assert run.proposals.get().tool == "create_refund"

from __future__ import annotations

import time

import pytest
from django.db import transaction

from agents import services
from agents.models import Escalation, Execution, Proposal, Run, Step, WorkItem
from agents.runner import ERR_PAUSED, run_work_item
from agents.services import proposal_execute
from demo.models import SandboxRefund
from governance.models import Workflow
from governance.services import workflow_pause, workflow_resume
from tests.agents.stub_openai import (  # noqa: F401 - fixtures
    GOOD_REFUND,
    make_item,
    make_refund_workflow,
    stub_openai_env_fixture,
    stub_openai_fixture,
)
from tests.agents.test_execute import decide, plan

pytestmark = pytest.mark.django_db


def test_a_paused_workflow_makes_no_model_call(stub_openai):
    workflow = make_refund_workflow()
    item = make_item(workflow, "good")
    workflow_pause(workflow=workflow, actor="ops:test", reason="incident")

    run = run_work_item(work_item_id=item.pk)
    assert stub_openai.requests == []
    assert run.stop_reason == Run.StopReason.PAUSED
    escalation = run.escalations.get()
    assert escalation.reason == Escalation.Reason.PAUSED
    assert escalation.detail == ERR_PAUSED


def test_execute_action_does_not_start_while_paused():
    workflow = make_refund_workflow(level="supervised")
    (refund,) = plan(workflow, ("create_refund", dict(GOOD_REFUND), "money"))
    decide(refund)
    workflow_pause(workflow=workflow, actor="ops:test", reason="incident")

    assert proposal_execute(proposal_id=refund.pk) is None
    assert not SandboxRefund.objects.exists()
    assert not Execution.objects.exists()
    refund.refresh_from_db()
    assert refund.status == Proposal.Status.ACCEPTED  # still approved: it runs after a resume

    workflow_resume(workflow=Workflow.objects.get(pk=workflow.pk), actor="ops:test")
    assert services.plans_redispatch(workflow=workflow) == [refund.pk]
    assert proposal_execute(proposal_id=refund.pk).status == Execution.Status.SUCCEEDED


def test_a_resume_answers_at_once_and_a_worker_restarts_the_held_work(
    django_capture_on_commit_callbacks, sent_tasks, monkeypatch
):
    """The resume commits and hands the held plans and items to one task; the
    request does not re-dispatch them itself (under load that took seconds)."""
    from agents import tasks

    workflow = make_refund_workflow(level="supervised")
    (refund,) = plan(workflow, ("create_refund", dict(GOOD_REFUND), "money"))
    workflow_pause(workflow=workflow, actor="ops:test", reason="incident")
    decide(refund)  # approved while paused: held
    waiting = make_item(workflow, "good")  # arrived while paused: held
    sent = sent_tasks

    with django_capture_on_commit_callbacks(execute=True):
        workflow_resume(workflow=Workflow.objects.get(pk=workflow.pk), actor="ops:test")
    assert sent == [("agents.resume_held_work", (workflow.pk,))]
    assert not Execution.objects.exists()  # nothing ran inside the resume

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert tasks.resume_held_work(workflow.pk) == 2  # the held plan and the new item
    assert len([c for c in callbacks if not hasattr(c, "audit_chain")]) == 2
    waiting.refresh_from_db()
    assert waiting.status == WorkItem.Status.RECEIVED  # sent for a run, on commit


def test_the_resume_task_leaves_a_workflow_paused_again_alone():
    from agents import tasks

    workflow = make_refund_workflow(level="supervised")
    (refund,) = plan(workflow, ("create_refund", dict(GOOD_REFUND), "money"))
    decide(refund)
    workflow_pause(workflow=workflow, actor="ops:test", reason="incident")
    assert tasks.resume_held_work(workflow.pk) == 0


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_pausing_stops_in_flight_runs_before_their_next_step(
    stub_openai_env, celery_worker_process
):
    workflow = make_refund_workflow()
    with transaction.atomic():
        first, _ = services.work_item_create(
            workflow=workflow,
            external_id="slow-1",
            payload={"text": "[scenario:slow] Order A-1001 arrived broken."},
            source="api",
        )
    deadline = time.monotonic() + 30
    while not stub_openai_env.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stub_openai_env.requests, "the run never reached the model"
    with transaction.atomic():
        queued = [
            services.work_item_create(
                workflow=workflow,
                external_id=f"queued-{i}",
                payload={"text": "[scenario:good] Order A-1001 arrived broken."},
                source="api",
            )[0]
            for i in range(2)
        ]
    # The first run is waiting on its model call: pause now.
    workflow_pause(workflow=workflow, actor="ops:test", reason="kill switch drill")
    paused_at = Workflow.objects.get(pk=workflow.pk).paused_at

    ids = [first.pk, *(q.pk for q in queued)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if WorkItem.objects.filter(pk__in=ids, status=WorkItem.Status.ESCALATED).count() == 3:
            break
        time.sleep(0.2)
    assert WorkItem.objects.filter(pk__in=ids, status=WorkItem.Status.ESCALATED).count() == 3
    assert set(Run.objects.filter(work_item_id__in=ids).values_list("stop_reason", flat=True)) == {
        Run.StopReason.PAUSED
    }
    # Only the in-flight call reached the model; no tool call started after the pause.
    assert len(stub_openai_env.requests) == 1
    assert (
        not Step.objects.filter(
            run__work_item_id__in=ids,
            kind__in=[Step.Kind.TOOL_CALL, Step.Kind.MODEL_CALL],
            created_at__gt=paused_at,
        )
        .exclude(name="stub-small", run__work_item_id=first.pk)
        .exists()
    )
    assert not Step.objects.filter(run__work_item_id__in=ids, kind=Step.Kind.TOOL_CALL).exists()
    assert not Proposal.objects.filter(work_item_id__in=ids).exists()

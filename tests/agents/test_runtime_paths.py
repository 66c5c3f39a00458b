"""The runtime's hot path (issue 3): query budgets, and the guards the cuts kept."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import Execution, Proposal, Run, Step, WorkItem
from agents.runner import Runner, run_claim
from agents.services import execution_key, plan_dispatch_ready, proposal_execute
from demo.models import SandboxRefund
from governance.models import ToolGrant
from tests.agents.stub_openai import GOOD_REFUND, make_refund_workflow
from tests.agents.test_execute import decide, plan
from tests.callbacks import task_callbacks

pytestmark = pytest.mark.django_db

# What the cycle costs today, in the agents app's own statements (the audit chain's
# sealing runs on commit, outside these). A change that adds a query per call or per
# proposal shows up here first.
DISPATCH_QUERIES = 2  # the plan FOR UPDATE (decisions + grants joined), the item
EXECUTE_QUERIES = 14  # reserve (5), pause re-check, the sandbox refund (4), record (4)


def one_refund(level: str = "supervised") -> Proposal:
    (refund,) = plan(make_refund_workflow(level=level), ("create_refund", GOOD_REFUND, "money"))
    return refund


def test_dispatching_and_executing_a_one_action_plan_stays_within_its_query_budget(
    django_capture_on_commit_callbacks,
):
    refund = one_refund()
    decide(refund)
    with (
        CaptureQueriesContext(connection) as dispatch,
        django_capture_on_commit_callbacks() as callbacks,
    ):
        assert plan_dispatch_ready(run_id=refund.run_id) == [refund.pk]
    assert len(dispatch) <= DISPATCH_QUERIES, [q["sql"][:120] for q in dispatch]
    assert len(task_callbacks(callbacks)) == 1  # execute_action, once
    with CaptureQueriesContext(connection) as execute:
        execution = proposal_execute(proposal_id=refund.pk)
    sql = [q["sql"][:120] for q in execute if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    assert len(sql) <= EXECUTE_QUERIES, sql
    assert execution.status == Execution.Status.SUCCEEDED
    assert WorkItem.objects.get(pk=refund.work_item_id).status == WorkItem.Status.RESOLVED


def test_a_grant_demoted_before_dispatch_resolves_the_plan_instead_of_executing(
    django_capture_on_commit_callbacks,
):
    refund = one_refund()
    decide(refund)
    ToolGrant.objects.filter(workflow=refund.workflow, tool="create_refund").update(
        autonomy_level="shadow"
    )
    with django_capture_on_commit_callbacks() as callbacks:
        assert plan_dispatch_ready(run_id=refund.run_id) == []
    assert not task_callbacks(callbacks)
    item = WorkItem.objects.get(pk=refund.work_item_id)
    assert item.status == WorkItem.Status.RESOLVED


def test_a_disabled_grant_is_never_dispatched():
    refund = one_refund()
    decide(refund)
    ToolGrant.objects.filter(workflow=refund.workflow, tool="create_refund").update(enabled=False)
    assert plan_dispatch_ready(run_id=refund.run_id) == []
    assert not Execution.objects.exists()


def test_a_redelivered_running_execution_reruns_under_the_same_key_and_records_once():
    refund = one_refund()
    decide(refund)
    key = execution_key(refund, refund.arguments_hash)
    # A worker died after reserving (RUNNING) and maybe after the side effect.
    Execution.objects.create(
        proposal=refund,
        idempotency_key=key,
        arguments=refund.arguments,
        arguments_hash=refund.arguments_hash,
        status=Execution.Status.RUNNING,
        attempts=1,
    )
    execution = proposal_execute(proposal_id=refund.pk)
    again = proposal_execute(proposal_id=refund.pk)

    assert execution.pk == again.pk
    execution.refresh_from_db()
    assert execution.status == Execution.Status.SUCCEEDED
    assert execution.attempts == 2
    assert Execution.objects.count() == 1
    assert SandboxRefund.objects.count() == 1


def test_a_worker_that_lost_its_lease_writes_neither_its_trace_nor_its_proposals():
    workflow = make_refund_workflow(level="supervised")
    item = WorkItem.objects.create(
        workflow=workflow,
        external_id="lease-1",
        payload={"text": "Order A-1001 arrived broken."},
        source=WorkItem.Source.API,
    )
    run = run_claim(work_item_id=item.pk)
    runner = Runner(run)
    runner.handle_call("create_refund", json.dumps(GOOD_REFUND))
    runner.state.final = {"confidence": 0.9, "rationale": "r", "citations": []}
    # Another worker restarted the run meanwhile (its lease now).
    Run.objects.filter(pk=run.pk).update(state={"lease": "someone-else"})

    result = runner.finish()

    assert result.status == Run.Status.RUNNING
    assert result.state == {"lease": "someone-else"}
    assert not Proposal.objects.filter(run=run).exists()
    assert not Step.objects.filter(run=run).exists()


def test_finish_writes_the_whole_plan_in_order_with_ids():
    workflow = make_refund_workflow(level="supervised")
    item = WorkItem.objects.create(
        workflow=workflow,
        external_id="plan-1",
        payload={"text": "Order A-1001 arrived broken."},
        source=WorkItem.Source.API,
    )
    runner = Runner(run_claim(work_item_id=item.pk))
    runner.handle_call("create_refund", json.dumps(GOOD_REFUND))
    runner.handle_call("create_refund", json.dumps({**GOOD_REFUND, "amount": "10.00"}))
    runner.state.final = {"confidence": 0.9, "rationale": "r", "citations": []}

    run = runner.finish()

    assert run.status == Run.Status.PROPOSED
    run.refresh_from_db()
    assert run.status == Run.Status.PROPOSED
    assert run.tool_calls == 2
    proposals = list(run.proposals.order_by("sequence"))
    assert [p.sequence for p in proposals] == [1, 2]
    assert proposals[1].arguments["amount"] == "10.00"
    assert Step.objects.filter(run=run).count() == 2

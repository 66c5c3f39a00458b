from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from agents import services
from agents.budgets import ERR_LOOP, ERR_TOKENS
from agents.models import Escalation, Proposal, Run, Step, WorkItem
from agents.policy import RULE_CAP, RULE_SHADOW
from agents.runner import ERR_INVALID_AFTER_RETRY, ERR_UNGRANTED, run_work_item
from agents.tools import arguments_hash
from governance.models import AuditEvent
from tests.agents.stub_openai import (  # noqa: F401 - fixtures
    GOOD_REFUND,
    make_item,
    make_refund_workflow,
    stub_openai_env_fixture,
    stub_openai_fixture,
)
from tests.callbacks import task_callbacks

pytestmark = pytest.mark.django_db


def test_good_call_ends_in_a_pending_proposal_with_a_full_trace(stub_openai):
    workflow = make_refund_workflow()
    item = make_item(workflow, "good")
    run = run_work_item(work_item_id=item.pk)

    assert run.status == Run.Status.PROPOSED
    assert run.stop_reason == Run.StopReason.COMPLETED
    item.refresh_from_db()
    assert item.status == WorkItem.Status.AWAITING_REVIEW
    proposal = run.proposals.get()
    assert proposal.tool == "create_refund"
    assert proposal.status == Proposal.Status.PENDING
    assert proposal.arguments == GOOD_REFUND
    assert proposal.arguments_hash == arguments_hash(GOOD_REFUND)
    assert proposal.verdict == Proposal.Verdict.NEEDS_APPROVAL
    assert RULE_SHADOW in proposal.verdict_rule
    assert proposal.confidence == Decimal("0.920")
    assert proposal.sla_due_at is not None
    assert proposal.priority > 0
    kinds = list(run.steps.values_list("kind", "name"))
    assert kinds == [
        (Step.Kind.MODEL_CALL, "stub-small"),
        (Step.Kind.POLICY, "get_order"),
        (Step.Kind.TOOL_CALL, "get_order"),
        (Step.Kind.MODEL_CALL, "stub-small"),
        (Step.Kind.POLICY, "create_refund"),
        (Step.Kind.MODEL_CALL, "stub-small"),
    ]
    # Recorded: tokens, cost from the price table, model, and PII redacted in the trace.
    assert run.tokens_in == 3 * 350
    assert run.tokens_out == 3 * 40
    assert run.cost_usd > 0
    assert run.model == "stub-small"
    tool_step = run.steps.get(kind=Step.Kind.TOOL_CALL)
    assert "cora@example.com" not in json.dumps(tool_step.output)
    # The real openai client sent the tools in OpenAI format, work item as delimited data.
    request = stub_openai.requests[0]
    assert {t["function"]["name"] for t in request["tools"]} == {
        "get_order", "create_refund", "draft_customer_reply", "search_knowledge",
    }  # fmt: skip
    assert '<untrusted_data source="work_item">' in request["messages"][1]["content"]
    assert AuditEvent.objects.filter(
        action="agent.run.proposed", actor_label="agent:refunds"
    ).exists()


def test_invalid_call_is_retried_once_with_the_error_then_succeeds_on_the_large_model(stub_openai):
    workflow = make_refund_workflow()
    run = run_work_item(work_item_id=make_item(workflow, "invalid_then_good").pk)

    assert run.status == Run.Status.PROPOSED
    assert run.retries == 1
    validation = run.steps.get(kind=Step.Kind.VALIDATION)
    assert "amount" in validation.error
    # The retry carried the validation error and went to the large model.
    retry_request = stub_openai.requests[1]
    assert retry_request["model"] == "stub-large"
    assert "validation_error" in retry_request["messages"][-1]["content"]
    assert run.proposals.get().arguments["amount"] == "42.00"


def test_invalid_call_twice_escalates(stub_openai):
    workflow = make_refund_workflow()
    run = run_work_item(work_item_id=make_item(workflow, "invalid_twice").pk)

    assert run.stop_reason == Run.StopReason.INVALID_ARGUMENTS
    escalation = run.escalations.get()
    assert escalation.reason == Escalation.Reason.INVALID_ARGUMENTS
    assert escalation.detail.startswith(ERR_INVALID_AFTER_RETRY.format(tool="create_refund"))
    assert not run.proposals.exists()


def test_unparseable_json_arguments_count_as_invalid(stub_openai):
    workflow = make_refund_workflow()
    run = run_work_item(work_item_id=make_item(workflow, "bad_json").pk)
    assert run.status == Run.Status.PROPOSED
    assert run.retries == 1


def test_ungranted_tool_is_refused_recorded_and_escalated(stub_openai):
    workflow = make_refund_workflow()
    run = run_work_item(work_item_id=make_item(workflow, "ungranted").pk)

    assert run.stop_reason == Run.StopReason.UNGRANTED_TOOL
    step = run.steps.get(kind=Step.Kind.TOOL_CALL, name="delete_order")
    assert step.error == ERR_UNGRANTED.format(tool="delete_order")
    assert run.escalations.get().reason == Escalation.Reason.UNGRANTED_TOOL


def test_loop_trips_and_the_packet_explains_it(stub_openai):
    workflow = make_refund_workflow(loop_threshold=3)
    item = make_item(workflow, "loop")
    run = run_work_item(work_item_id=item.pk)

    assert run.stop_reason == Run.StopReason.LOOP
    escalation = run.escalations.get()
    assert escalation.reason == Escalation.Reason.LOOP
    assert escalation.detail == ERR_LOOP.format(tool="get_order", count=3)
    packet = escalation.packet
    assert packet["work_item"]["external_id"] == item.external_id
    assert packet["budget"]["tripped"] == "loop_threshold=3"
    assert [o["tool"] for o in packet["tool_outputs"]] == ["get_order", "get_order"]
    assert any(s["kind"] == "budget" for s in packet["steps"])
    assert "last_state" in packet
    assert packet["last_state"]["model"] == "stub-small"
    item.refresh_from_db()
    assert item.status == WorkItem.Status.ESCALATED


def test_call_over_the_cap_needs_approval_with_the_cap_rule(stub_openai):
    workflow = make_refund_workflow(level="autonomous", cap="200")
    run = run_work_item(work_item_id=make_item(workflow, "over_cap").pk)

    proposal = run.proposals.get()
    assert proposal.verdict == Proposal.Verdict.NEEDS_APPROVAL
    assert RULE_CAP.format(tool="create_refund", fact="amount", value="450.00", cap="200") in (
        proposal.verdict_rule
    )
    assert not proposal.auto_executed


def test_huge_token_count_trips_the_token_budget(stub_openai):
    workflow = make_refund_workflow(max_tokens=20_000)
    run = run_work_item(work_item_id=make_item(workflow, "huge_tokens").pk)

    assert run.stop_reason == Run.StopReason.BUDGET_TOKENS
    escalation = run.escalations.get()
    assert escalation.reason == Escalation.Reason.BUDGET
    assert escalation.detail == ERR_TOKENS.format(limit=20_000, used=5_000_010)
    # Tripped before any tool ran.
    assert not run.steps.filter(kind=Step.Kind.TOOL_CALL).exists()


def test_refusal_cascades_to_the_large_model(stub_openai):
    workflow = make_refund_workflow()
    run = run_work_item(work_item_id=make_item(workflow, "refusal").pk)

    assert [r["model"] for r in stub_openai.requests][:2] == ["stub-small", "stub-large"]
    assert run.status == Run.Status.PROPOSED
    assert run.model == "stub-large"


def test_low_stated_confidence_cascades_to_the_large_model(stub_openai):
    workflow = make_refund_workflow()
    run = run_work_item(work_item_id=make_item(workflow, "low_confidence").pk)

    assert [r["model"] for r in stub_openai.requests] == ["stub-small", "stub-large", "stub-large"]
    assert run.proposals.get().confidence == Decimal("0.900")


def test_several_calls_form_a_plan_in_sequence(stub_openai):
    workflow = make_refund_workflow()
    run = run_work_item(work_item_id=make_item(workflow, "plan").pk)

    assert list(run.proposals.order_by("sequence").values_list("sequence", "tool")) == [
        (1, "create_refund"),
        (2, "draft_customer_reply"),
    ]
    reply = run.proposals.get(sequence=2)
    assert reply.risk_class == "external_message"
    assert reply.priority > 0


def test_identical_model_requests_are_served_from_the_cache(stub_openai):
    workflow = make_refund_workflow()
    first = run_work_item(work_item_id=make_item(workflow, "good", external_id="same").pk)
    assert first.cache_misses >= 3
    assert first.cache_hits == 0
    served = len(stub_openai.requests)
    # The same conversation again (another workflow, same names): no new model calls.
    other = make_refund_workflow(slug="refunds-2")
    other.name = workflow.name
    other.save()
    second = run_work_item(work_item_id=make_item(other, "good", external_id="same").pk)
    assert len(stub_openai.requests) == served
    assert second.cache_hits >= 3
    assert second.cost_usd == 0


def test_run_agent_redelivery_makes_no_second_run(stub_openai):
    workflow = make_refund_workflow()
    item = make_item(workflow, "good")
    run_work_item(work_item_id=item.pk)
    assert run_work_item(work_item_id=item.pk) is None
    assert Run.objects.filter(work_item=item).count() == 1
    assert Proposal.objects.filter(work_item=item).count() == 1


# --- work_item_create ------------------------------------------------------------------


def test_work_item_create_is_idempotent_and_dispatches_on_commit(
    django_capture_on_commit_callbacks,
):
    workflow = make_refund_workflow()
    with django_capture_on_commit_callbacks() as callbacks:
        item, created = services.work_item_create(
            workflow=workflow, external_id="T-1", payload={"text": "hi"}, source="api"
        )
    assert created
    assert len(task_callbacks(callbacks)) == 1
    with django_capture_on_commit_callbacks() as callbacks:
        again, created = services.work_item_create(
            workflow=workflow, external_id="T-1", payload={"text": "other"}, source="api"
        )
    assert not created
    assert again.pk == item.pk
    assert task_callbacks(callbacks) == []


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (["not", "a", "dict"], services.ERR_PAYLOAD_NOT_OBJECT.format(kind="list")),
        ({"text": 42}, services.ERR_PAYLOAD_TEXT),
        (
            {"text": "x" * 70_000},
            services.ERR_PAYLOAD_TOO_BIG.format(size=70_012, limit=services.MAX_PAYLOAD_BYTES),
        ),
    ],
)
def test_malformed_payload_is_refused_with_a_clear_message(payload, message):
    workflow = make_refund_workflow()
    with pytest.raises(ValidationError) as excinfo:
        services.work_item_create(
            workflow=workflow, external_id="bad", payload=payload, source="api"
        )
    assert excinfo.value.messages == [message]
    assert not WorkItem.objects.exists()


# --- A real worker ---------------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_run_agent_end_to_end(stub_openai_env, celery_worker_process):
    workflow = make_refund_workflow()
    with transaction.atomic():
        item, _ = services.work_item_create(
            workflow=workflow,
            external_id="worker-1",
            payload={"text": "[scenario:good] Order A-1001 arrived broken."},
            source="api",
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        item.refresh_from_db()
        if item.status not in (WorkItem.Status.RECEIVED, WorkItem.Status.RUNNING):
            break
        time.sleep(0.2)
    assert item.status == WorkItem.Status.AWAITING_REVIEW
    run = Run.objects.get(work_item=item)
    assert run.proposals.get().tool == "create_refund"
    assert run.steps.count() == 6
    assert len(stub_openai_env.requests) == 3

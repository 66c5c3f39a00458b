"""Shadow mode: the system of record reports what the human did; Tenure pairs it."""

from __future__ import annotations

import pytest
from django.utils import timezone

from agents.models import Proposal, WorkItem
from governance.api import errors
from governance.models import AuditEvent, AutonomyLevel
from reviews.models import Claim, Decision, HumanAction, ItemOutcome
from reviews.reported import (
    ERR_ALREADY_DECIDED,
    ERR_NO_PROPOSAL,
    ERR_UNKNOWN_WORK_ITEM,
    REASON_NO_ACTION,
)
from tests.api.conftest import error_of
from tests.factories import ProposalFactory, RunFactory, ToolGrantFactory, WorkItemFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/workflows/refunds/actions/report"
ARGS = {"order_number": "A-1001", "amount": "42.00", "reason": "Arrived broken"}


@pytest.fixture
def proposal(workflow):
    item = WorkItemFactory(workflow=workflow, external_id="T-1")
    return ProposalFactory(run__work_item=item, arguments=dict(ARGS))


def _report(api, **body):
    return api.post(URL, {"external_id": "T-1", **body})


def test_same_tool_and_arguments_is_an_accept(api, proposal):
    response = _report(api, tool="create_refund", arguments=dict(ARGS))
    assert response.status_code == 200, response.content
    [result] = response.json()["decisions"]
    assert (result["proposal_id"], result["verdict"]) == (proposal.pk, "accept")
    decision = Decision.objects.get(proposal=proposal)
    assert decision.kind == Decision.Kind.REPORTED
    assert decision.reviewer is None
    proposal.refresh_from_db()
    assert proposal.status == Proposal.Status.ACCEPTED
    assert proposal.decided_at is not None
    proposal.work_item.refresh_from_db()
    assert proposal.work_item.status == WorkItem.Status.RESOLVED  # the plan dispatcher ran
    event = AuditEvent.objects.get(action="proposal.reported")
    assert event.actor_label == "integration:billing"
    assert event.data["verdict"] == "accept"


def test_different_arguments_are_an_edit_with_the_diff(api, proposal):
    response = _report(api, tool="create_refund", arguments={**ARGS, "amount": "30.00"})
    [result] = response.json()["decisions"]
    assert result["verdict"] == "edit"
    assert set(result["diff"]) == {"amount"}
    decision = Decision.objects.get(proposal=proposal)
    assert decision.final_arguments["order_number"] == "A-1001"
    proposal.refresh_from_db()
    assert proposal.status == Proposal.Status.EDITED


def test_a_tool_the_agent_did_not_propose_is_missed_and_rejects_nothing(api, proposal):
    response = _report(api, tool="send_customer_message", arguments={"to": "a@example.test"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["decisions"] == []
    [missed] = body["missed"]
    assert (missed["tool"], missed["arguments"], missed["action"]) == (
        "send_customer_message",
        {"to": "a@example.test"},
        0,
    )
    assert body["pending"] == [proposal.pk]
    assert body["outcome"] is None
    # The human did something the agent never proposed: that says nothing about the
    # agent's refund, which waits for the rest of the human's account.
    proposal.refresh_from_db()
    assert proposal.status == Proposal.Status.PENDING
    assert not Decision.objects.exists()
    action = HumanAction.objects.get()
    assert (action.work_item_id, action.outcome, action.imported) == (
        proposal.work_item_id,
        None,
        False,
    )


def test_no_action_rejects_every_pending_proposal(api, workflow):
    item = WorkItemFactory(workflow=workflow, external_id="T-1")
    run = RunFactory(work_item=item)
    first = ProposalFactory(run=run, sequence=1)
    second = ProposalFactory(run=run, sequence=2, tool="send_customer_message")
    response = _report(api, tool=None)
    assert [d["proposal_id"] for d in response.json()["decisions"]] == [first.pk, second.pk]
    for proposal in (first, second):
        decision = Decision.objects.get(proposal=proposal)
        assert decision.verdict == Decision.Verdict.REJECT
        assert decision.reason_text == REASON_NO_ACTION
    outcome = ItemOutcome.objects.get(work_item=item)
    assert (outcome.source, outcome.did_nothing) == (ItemOutcome.Source.REPORT, True)


def test_a_reported_decision_releases_a_reviewers_claim(api, proposal, reviewer):
    now = timezone.now()
    Claim.objects.create(
        proposal=proposal, reviewer=reviewer, claimed_at=now, expires_at=now.replace(year=2100)
    )
    _report(api, tool="create_refund", arguments=dict(ARGS))
    assert not Claim.objects.filter(proposal=proposal).exists()


def test_a_second_report_is_refused_with_a_clear_message(api, proposal):
    assert _report(api, tool="create_refund", arguments=dict(ARGS)).status_code == 200
    again = _report(api, tool="create_refund", arguments=dict(ARGS))
    assert again.status_code == 409
    error = error_of(again)
    assert error["code"] == "already_decided"
    assert error["message"] == ERR_ALREADY_DECIDED.format(external_id="T-1")
    assert Decision.objects.count() == 1


def test_an_item_without_proposals_is_refused(api, workflow):
    WorkItemFactory(workflow=workflow, external_id="T-1", status=WorkItem.Status.RUNNING)
    response = _report(api, tool="create_refund", arguments=dict(ARGS))
    assert response.status_code == 409
    assert error_of(response)["message"] == ERR_NO_PROPOSAL.format(external_id="T-1")


def test_an_unknown_work_item_is_404(api, workflow):
    response = api.post(URL, {"external_id": "missing", "tool": "create_refund"})
    assert response.status_code == 404
    assert error_of(response)["message"] == ERR_UNKNOWN_WORK_ITEM.format(external_id="missing")


def test_proposals_above_shadow_are_not_reported(api, workflow):
    item = WorkItemFactory(workflow=workflow, external_id="T-1")
    ProposalFactory(run__work_item=item, autonomy_level=AutonomyLevel.SUPERVISED)
    response = _report(api, tool="create_refund", arguments=dict(ARGS))
    assert response.status_code == 409
    assert error_of(response)["code"] == "not_shadow"
    assert not Decision.objects.exists()


def test_arguments_without_a_tool_are_422(api, proposal):
    response = _report(api, tool=None, arguments={"amount": 1})
    assert response.status_code == 422
    assert error_of(response)["code"] == errors.VALIDATION_FAILED


def test_reporting_needs_its_verb(workflow, proposal, api_for):
    client = api_for([workflow], verbs=["work_items:write"])
    assert client.post(URL, {"external_id": "T-1", "tool": None}).status_code == 403


def test_arguments_are_compared_as_the_tool_reads_them(api, proposal, workflow):
    ToolGrantFactory(workflow=workflow, tool="create_refund")
    # 42 and "42.00" are the same Decimal to create_refund: an accept, not an edit.
    response = _report(api, tool="create_refund", arguments={**ARGS, "amount": 42})
    assert response.json()["decisions"][0]["verdict"] == "accept"


def test_arguments_the_tool_refuses_are_422_and_nothing_is_recorded(api, proposal, workflow):
    ToolGrantFactory(workflow=workflow, tool="create_refund")
    response = _report(api, tool="create_refund", arguments={**ARGS, "amount": -5})
    assert response.status_code == 422
    assert "amount" in error_of(response)["details"]
    assert not Decision.objects.exists()

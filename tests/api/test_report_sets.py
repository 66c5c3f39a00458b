"""Reports pair each human action with the right proposal, record what the agent
missed, close an item on the human's whole set, and never count an action twice."""

from __future__ import annotations

import pytest

from agents.models import Escalation, Proposal, WorkItem
from governance.models import AuditEvent
from reviews.api_schemas import ERR_EMPTY_PARTIAL, ERR_NO_SHAPE, ERR_TWO_SHAPES
from reviews.models import Decision, HumanAction, ItemOutcome, RejectReason
from reviews.reported import (
    ERR_ALREADY_REPORTED,
    ERR_ITEM_CLOSED,
    ERR_NOTHING_PROPOSED_PARTIAL,
    REASON_NO_ACTION,
    REASON_NOT_DONE,
)
from tests.api.conftest import error_of
from tests.factories import (
    EscalationFactory,
    ProposalFactory,
    RunFactory,
    ToolGrantFactory,
    WorkItemFactory,
)

pytestmark = pytest.mark.django_db

URL = "/api/v1/workflows/refunds/actions/report"
REFUND = {"order_number": "A-1001", "amount": "42.00", "reason": "Arrived broken"}
REPLY = {
    "to": "ann@example.test",
    "subject": "Your refund",
    "body": "We refunded order A-1001.",
    "order_number": "A-1001",
}


@pytest.fixture(autouse=True)
def granted(workflow):
    """The refund workflow's tools, so arguments are compared as the tools read them."""
    return [
        ToolGrantFactory(workflow=workflow, tool=t)
        for t in ("create_refund", "draft_customer_reply")
    ]


def _plan(workflow, *actions, external_id="T-1", status=WorkItem.Status.AWAITING_REVIEW):
    item = WorkItemFactory(workflow=workflow, external_id=external_id, status=status)
    run = RunFactory(work_item=item)
    return [
        ProposalFactory(run=run, sequence=position, tool=tool, arguments=dict(arguments))
        for position, (tool, arguments) in enumerate(actions, start=1)
    ]


def _report(api, headers=None, **body):
    return api.post(URL, {"external_id": "T-1", **body}, headers=headers)


def _status(proposal) -> str:
    proposal.refresh_from_db()
    return proposal.status


# --- Pairing with the right proposal ------------------------------------------------------


def test_an_exact_match_pairs_with_its_proposal_not_the_first_of_that_tool(api, workflow):
    first, second = _plan(
        workflow,
        ("create_refund", {**REFUND, "amount": "30.00"}),
        ("create_refund", REFUND),
    )
    response = _report(api, tool="create_refund", arguments=dict(REFUND))
    assert response.status_code == 200, response.content
    [result] = response.json()["decisions"]
    assert (result["proposal_id"], result["verdict"], result["diff"]) == (second.pk, "accept", {})
    assert response.json()["pending"] == [first.pk]
    assert _status(first) == Proposal.Status.PENDING
    assert _status(second) == Proposal.Status.ACCEPTED


def test_the_closest_proposal_of_the_tool_pairs_when_none_matches_exactly(api, workflow):
    far, near = _plan(
        workflow,
        ("create_refund", {"order_number": "A-2002", "amount": "10.00", "reason": "Late"}),
        ("create_refund", {**REFUND, "amount": "40.00"}),
    )
    response = _report(api, tool="create_refund", arguments=dict(REFUND))
    [result] = response.json()["decisions"]
    assert (result["proposal_id"], result["verdict"]) == (near.pk, "edit")
    assert result["diff"] == {"amount": ["40.00", "42.00"]}
    assert _status(far) == Proposal.Status.PENDING


def test_equally_close_proposals_pair_in_plan_order(api, workflow):
    first, second = _plan(
        workflow,
        ("create_refund", {**REFUND, "amount": "41.00"}),
        ("create_refund", {**REFUND, "amount": "43.00"}),
    )
    response = _report(api, tool="create_refund", arguments=dict(REFUND))
    assert response.json()["decisions"][0]["proposal_id"] == first.pk
    assert _status(second) == Proposal.Status.PENDING


def test_a_set_pairs_the_closest_couples_first(api, workflow):
    # Action 0 is one field from either proposal; action 1 is exactly the first.
    # Pairing action 0 first, in plan order, would cost action 1 its exact match.
    first, second = _plan(
        workflow,
        ("create_refund", {**REFUND, "amount": "10.00"}),
        ("create_refund", {**REFUND, "amount": "20.00"}),
    )
    actions = [
        {"tool": "create_refund", "arguments": {**REFUND, "amount": "15.00"}},
        {"tool": "create_refund", "arguments": {**REFUND, "amount": "10.00"}},
    ]
    response = _report(api, actions=actions)
    by_proposal = {d["proposal_id"]: d for d in response.json()["decisions"]}
    assert (by_proposal[first.pk]["verdict"], by_proposal[first.pk]["action"]) == ("accept", 1)
    assert (by_proposal[second.pk]["verdict"], by_proposal[second.pk]["action"]) == ("edit", 0)


# --- What the agent missed -----------------------------------------------------------------


def test_actions_reported_one_by_one_each_find_their_proposal(api, workflow):
    """The issue's run: the human's correct actions, reported one at a time, include one
    the agent never proposed. It is missed; it rejects nothing; the later exact matches
    still pair (they were 409 already_decided)."""
    refund, reply = _plan(workflow, ("create_refund", REFUND), ("draft_customer_reply", REPLY))
    missed = _report(api, tool="get_order", arguments={"order_number": "A-1001"})
    assert missed.status_code == 200, missed.content
    assert [m["tool"] for m in missed.json()["missed"]] == ["get_order"]
    assert missed.json()["decisions"] == []
    for tool, arguments, proposal in (
        ("draft_customer_reply", REPLY, reply),
        ("create_refund", REFUND, refund),
    ):
        response = _report(api, tool=tool, arguments=dict(arguments))
        assert response.status_code == 200, response.content
        [result] = response.json()["decisions"]
        assert (result["proposal_id"], result["verdict"]) == (proposal.pk, "accept")
    assert not Decision.objects.filter(verdict=Decision.Verdict.REJECT).exists()
    assert HumanAction.objects.get().tool == "get_order"


def test_the_whole_set_pairs_misses_rejects_the_rest_and_closes_the_item(api, workflow):
    refund, reply = _plan(workflow, ("create_refund", REFUND), ("draft_customer_reply", REPLY))
    actions = [
        {"tool": "get_order", "arguments": {"order_number": "A-1001"}},
        {"tool": "create_refund", "arguments": REFUND},
    ]
    response = _report(api, actions=actions, seconds_spent=90)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["complete"] is True
    verdicts = {
        d["proposal_id"]: (d["verdict"], d["reason"], d["action"]) for d in body["decisions"]
    }
    assert verdicts == {
        refund.pk: ("accept", "", 1),
        reply.pk: ("reject", RejectReason.WRONG_ACTION, None),
    }
    assert Decision.objects.get(proposal=reply).reason_text == REASON_NOT_DONE
    assert [(m["tool"], m["action"]) for m in body["missed"]] == [("get_order", 0)]
    outcome = ItemOutcome.objects.get(work_item=refund.work_item)
    assert body["outcome"]["id"] == outcome.pk
    assert (outcome.source, outcome.did_nothing, outcome.imported) == ("report", False, False)
    assert HumanAction.objects.get().outcome == outcome
    refund.work_item.refresh_from_db()
    assert refund.work_item.status == WorkItem.Status.RESOLVED
    # The human's time on the item is shared by the decisions, not counted for each.
    assert sum(Decision.objects.values_list("seconds_spent", flat=True)) == 90
    event = AuditEvent.objects.get(action="work_item.reported")
    assert (event.data["paired"], event.data["rejected"], event.data["missed"]) == (1, 1, 1)


def test_a_partial_set_leaves_the_rest_pending_until_the_set_that_completes_it(api, workflow):
    refund, reply = _plan(workflow, ("create_refund", REFUND), ("draft_customer_reply", REPLY))
    first = _report(api, actions=[{"tool": "create_refund", "arguments": REFUND}], complete=False)
    assert first.json()["pending"] == [reply.pk]
    assert first.json()["outcome"] is None
    assert not ItemOutcome.objects.exists()
    # The whole set repeats the refund already reported: it is not counted again.
    whole = _report(
        api,
        actions=[
            {"tool": "create_refund", "arguments": REFUND},
            {"tool": "draft_customer_reply", "arguments": REPLY},
        ],
    )
    assert whole.status_code == 200, whole.content
    assert whole.json()["already_recorded"] == [0]
    [result] = whole.json()["decisions"]
    assert (result["proposal_id"], result["verdict"], result["action"]) == (reply.pk, "accept", 1)
    assert whole.json()["missed"] == []
    assert Decision.objects.count() == 2
    assert ItemOutcome.objects.get().did_nothing is False


# --- Doing nothing ---------------------------------------------------------------------------


def test_no_action_as_an_empty_set_rejects_every_pending_proposal(api, workflow):
    refund, reply = _plan(workflow, ("create_refund", REFUND), ("draft_customer_reply", REPLY))
    response = _report(api, actions=[])
    assert response.status_code == 200, response.content
    assert [d["verdict"] for d in response.json()["decisions"]] == ["reject", "reject"]
    assert {d.reason_text for d in Decision.objects.all()} == {REASON_NO_ACTION}
    assert response.json()["outcome"]["did_nothing"] is True


@pytest.mark.parametrize("body", [{"actions": []}, {"tool": None}])
def test_no_action_on_an_escalated_item_closes_it_as_both_did_nothing(api, workflow, body):
    escalation = EscalationFactory(
        work_item__workflow=workflow,
        work_item__external_id="T-1",
        reason=Escalation.Reason.HARD_CASE,
    )
    response = _report(api, **body)
    assert response.status_code == 200, response.content
    assert response.json()["decisions"] == []
    outcome = ItemOutcome.objects.get(work_item=escalation.work_item)
    assert (outcome.source, outcome.did_nothing) == (ItemOutcome.Source.REPORT, True)
    escalation.refresh_from_db()
    assert escalation.status == Escalation.Status.RESOLVED
    escalation.work_item.refresh_from_db()
    assert escalation.work_item.status == WorkItem.Status.RESOLVED
    assert escalation.work_item.succeeded is True


def test_a_human_action_on_an_escalated_item_is_missed_and_closes_it(api, workflow):
    escalation = EscalationFactory(work_item__workflow=workflow, work_item__external_id="T-1")
    response = _report(api, actions=[{"tool": "create_refund", "arguments": REFUND}])
    assert response.status_code == 200, response.content
    [missed] = response.json()["missed"]
    outcome = ItemOutcome.objects.get(work_item=escalation.work_item)
    assert outcome.did_nothing is False
    assert HumanAction.objects.get(pk=missed["id"]).outcome == outcome


def test_part_of_a_set_on_an_item_the_agent_proposed_nothing_for_is_refused(api, workflow):
    EscalationFactory(work_item__workflow=workflow, work_item__external_id="T-1")
    response = _report(api, tool="create_refund", arguments=dict(REFUND))
    assert response.status_code == 409
    assert error_of(response)["message"] == ERR_NOTHING_PROPOSED_PARTIAL.format(external_id="T-1")
    assert not HumanAction.objects.exists()


# --- Never twice -------------------------------------------------------------------------------


def test_a_closed_item_refuses_another_report(api, workflow):
    _plan(workflow, ("create_refund", REFUND))
    assert _report(api, actions=[{"tool": "create_refund", "arguments": REFUND}]).status_code == 200
    again = _report(api, actions=[{"tool": "create_refund", "arguments": REFUND}])
    assert again.status_code == 409
    error = error_of(again)
    assert error["code"] == "item_closed"
    assert error["message"] == ERR_ITEM_CLOSED.format(
        external_id="T-1", source="Reported by the system of record"
    )
    assert Decision.objects.count() == 1
    assert ItemOutcome.objects.count() == 1


def test_a_retried_action_without_a_key_is_not_paired_with_another_proposal(api, workflow):
    refund, reply = _plan(
        workflow, ("create_refund", REFUND), ("create_refund", {**REFUND, "amount": "5.00"})
    )
    assert _report(api, tool="create_refund", arguments=dict(REFUND)).status_code == 200
    retry = _report(api, tool="create_refund", arguments=dict(REFUND))
    assert retry.status_code == 409
    assert error_of(retry)["code"] == "already_reported"
    assert error_of(retry)["message"] == ERR_ALREADY_REPORTED.format(external_id="T-1")
    assert _status(reply) == Proposal.Status.PENDING
    assert Decision.objects.count() == 1
    assert not HumanAction.objects.exists()


# --- The body --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"actions": [], "tool": "create_refund"}, ERR_TWO_SHAPES),
        ({}, ERR_NO_SHAPE),
        ({"actions": [], "complete": False}, ERR_EMPTY_PARTIAL),
        ({"tool": None, "complete": False}, ERR_EMPTY_PARTIAL),
    ],
)
def test_a_body_that_is_not_one_shape_is_422(api, workflow, body, message):
    _plan(workflow, ("create_refund", REFUND))
    response = _report(api, **body)
    assert response.status_code == 422
    assert message in error_of(response)["details"][0]["msg"]
    assert not Decision.objects.exists()


def test_invalid_arguments_in_a_set_are_422_by_position(api, workflow):
    _plan(workflow, ("create_refund", REFUND))
    actions = [
        {"tool": "create_refund", "arguments": REFUND},
        {"tool": "create_refund", "arguments": {**REFUND, "amount": -5}},
    ]
    response = _report(api, actions=actions)
    assert response.status_code == 422
    assert set(error_of(response)["details"]) == {"actions[1].amount"}
    assert not Decision.objects.exists()

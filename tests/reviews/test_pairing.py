"""The pairing rule, once, for reports and imports: reviews.reported.pair_actions."""

from __future__ import annotations

from agents.models import Proposal
from reviews.models import Decision, RejectReason
from reviews.reported import REASON_NO_ACTION, REASON_NOT_DONE, ReportedAction, pair_actions
from tests.reviews.factories import REFUND_ARGS, REFUND_TOOL

TOOLS = {"create_refund": REFUND_TOOL, "send_message": None}


def _plan(*actions: tuple[str, dict]) -> list[Proposal]:
    return [
        Proposal(sequence=position, tool=tool, arguments=dict(arguments))
        for position, (tool, arguments) in enumerate(actions, start=1)
    ]


def _refund(**changes) -> ReportedAction:
    return ReportedAction("create_refund", {**REFUND_ARGS, **changes})


def test_an_action_pairs_with_the_proposal_of_its_tool_with_the_fewest_differing_fields():
    plan = _plan(
        ("create_refund", {**REFUND_ARGS, "amount": "1.00", "reason": "Other"}),
        ("create_refund", {**REFUND_ARGS, "amount": "1.00"}),
    )
    [pairing] = pair_actions(
        pending=plan, actions=[_refund()], tools=TOOLS, complete=False
    ).pairings
    assert pairing.proposal is plan[1]
    assert (pairing.verdict, pairing.diff) == (Decision.Verdict.EDIT, {"amount": ["1.00", "42.00"]})


def test_values_the_tool_reads_as_equal_are_an_accept():
    plan = _plan(("create_refund", REFUND_ARGS))
    result = pair_actions(pending=plan, actions=[_refund(amount=42)], tools=TOOLS, complete=True)
    [pairing] = result.pairings
    assert (pairing.verdict, pairing.diff) == (Decision.Verdict.ACCEPT, {})


def test_a_tie_goes_to_the_proposal_earlier_in_the_plan():
    plan = _plan(
        ("create_refund", {**REFUND_ARGS, "amount": "41.00"}),
        ("create_refund", {**REFUND_ARGS, "amount": "43.00"}),
    )
    result = pair_actions(pending=plan, actions=[_refund()], tools=TOOLS, complete=False)
    assert [p.proposal for p in result.pairings] == [plan[0]]
    assert result.unpaired == [plan[1]]


def test_the_closest_couples_are_paired_first():
    plan = _plan(
        ("create_refund", {**REFUND_ARGS, "amount": "10.00"}),
        ("create_refund", {**REFUND_ARGS, "amount": "20.00"}),
    )
    actions = [_refund(amount="15.00"), _refund(amount="10.00")]
    result = pair_actions(pending=plan, actions=actions, tools=TOOLS, complete=True)
    assert [(p.proposal.sequence, p.action, p.verdict) for p in result.pairings] == [
        (1, 1, Decision.Verdict.ACCEPT),
        (2, 0, Decision.Verdict.EDIT),
    ]


def test_an_action_of_a_tool_nobody_proposed_is_missed_and_rejects_nothing():
    plan = _plan(("create_refund", REFUND_ARGS))
    actions = [ReportedAction("send_message", {"text": "Hi"})]
    result = pair_actions(pending=plan, actions=actions, tools=TOOLS, complete=False)
    assert (result.pairings, result.missed, result.unpaired) == ([], [0], plan)


def test_a_whole_set_rejects_what_the_human_did_not_do():
    plan = _plan(("create_refund", REFUND_ARGS), ("send_message", {"text": "Hi"}))
    result = pair_actions(pending=plan, actions=[_refund()], tools=TOOLS, complete=True)
    accepted, rejected = result.pairings
    assert accepted.verdict == Decision.Verdict.ACCEPT
    assert (rejected.verdict, rejected.reason, rejected.reason_text, rejected.action) == (
        Decision.Verdict.REJECT,
        RejectReason.WRONG_ACTION,
        REASON_NOT_DONE,
        None,
    )
    assert rejected.diff == {"tool": ["send_message", None]}


def test_no_action_rejects_every_proposal_and_nothing_against_nothing_is_empty():
    plan = _plan(("create_refund", REFUND_ARGS), ("send_message", {"text": "Hi"}))
    result = pair_actions(pending=plan, actions=[], tools=TOOLS, complete=True)
    assert {p.reason_text for p in result.pairings} == {REASON_NO_ACTION}
    nothing = pair_actions(pending=[], actions=[], tools=TOOLS, complete=True)
    assert (nothing.pairings, nothing.missed, nothing.unpaired) == ([], [], [])

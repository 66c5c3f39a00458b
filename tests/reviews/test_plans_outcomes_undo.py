"""Evidence that matches what happened: every action of a plan is judged on its own
(or is counted as not judged), the item's outcome is written with its last judgment,
a decision names the card it was made on, and a reviewer may take back a slip."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, InternalError, ProgrammingError, connection, transaction
from django.utils import timezone

from agents.models import Execution, Proposal, WorkItem
from agents.services import proposal_execute
from evidence import metrics
from governance.models import AuditEvent, AutonomyLevel, ToolGrant
from reviews import claims, services
from reviews.models import (
    Approval,
    Claim,
    Decision,
    EscalationResolution,
    HumanAction,
    ItemOutcome,
    RejectReason,
    UndoneDecision,
)
from tests.factories import EscalationFactory, ProposalFactory
from tests.reviews.factories import REFUND_ARGS, plan_factory

pytestmark = pytest.mark.django_db

ON_POSTGRESQL = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the append-only trigger is PostgreSQL's"
)


def _supervised(workflow) -> None:
    workflow.autonomy_level = AutonomyLevel.SUPERVISED
    workflow.save()
    ToolGrant.objects.filter(workflow=workflow).update(autonomy_level=AutonomyLevel.SUPERVISED)


def _decide(proposal, reviewer, verdict="accept", **extra):
    claim = claims.claim_proposal(reviewer=reviewer, proposal=proposal)
    assert claim is not None
    if verdict == "reject":
        extra.setdefault("reason", RejectReason.WRONG_ACTION)
    return services.proposal_decide(
        proposal_id=proposal.pk,
        reviewer=reviewer,
        claim_token=claim.token,
        verdict=verdict,
        **extra,
    )


def _statuses(proposals):
    return [Proposal.objects.get(pk=p.pk).status for p in proposals]


# --- A. plans: judged on their own ----------------------------------------------------


def test_at_supervised_a_rejection_leaves_the_rest_pending_for_the_reviewer(workflow, reviewer):
    _supervised(workflow)
    plan = plan_factory(workflow=workflow, tools=("create_refund", "send_message", "send_message"))
    _decide(plan[0], reviewer, "reject")
    assert _statuses(plan) == ["rejected", "pending", "pending"]
    item = WorkItem.objects.get(pk=plan[0].work_item_id)
    assert item.status == WorkItem.Status.AWAITING_REVIEW
    assert not ItemOutcome.objects.exists()
    assert claims.claim_next(reviewer=reviewer, workflow=workflow).proposal_id == plan[1].pk


def test_at_supervised_the_approved_actions_run_in_order_skipping_the_rejected(
    workflow, reviewer, monkeypatch, django_capture_on_commit_callbacks
):
    _supervised(workflow)
    plan = plan_factory(workflow=workflow, tools=("create_refund", "send_message", "send_message"))
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr("agents.queue.send", lambda name, *args: sent.append((name, args)) or True)
    with django_capture_on_commit_callbacks(execute=True):
        _decide(plan[1], reviewer, "reject")
        _decide(plan[2], reviewer)
    assert sent == []  # the first action still waits for a human: nothing runs yet
    with django_capture_on_commit_callbacks(execute=True):
        _decide(plan[0], reviewer)
    assert [args[0] for name, args in sent if name == "agents.execute_action"] == [plan[0].pk]
    assert WorkItem.objects.get(pk=plan[0].work_item_id).status == WorkItem.Status.EXECUTING
    outcome = ItemOutcome.objects.get()
    assert (outcome.source, outcome.did_nothing) == (ItemOutcome.Source.CONSOLE, False)


def test_reject_the_rest_rejects_every_waiting_action_each_with_its_own_decision(
    workflow, reviewer
):
    _supervised(workflow)
    plan = plan_factory(workflow=workflow, tools=("create_refund", "send_message", "send_message"))
    _decide(plan[0], reviewer, "reject")
    claim = claims.claim_proposal(reviewer=reviewer, proposal=plan[1])
    decisions = services.plan_reject_rest(
        proposal_id=plan[1].pk,
        reviewer=reviewer,
        claim_token=claim.token,
        reason=RejectReason.WRONG_RECORD,
        reason_text="The whole plan is for the wrong order",
        workflow=workflow,
        shown_proposal_id=str(plan[1].pk),
        shown_arguments_hash=plan[1].arguments_hash,
    )
    assert sorted(d.proposal_id for d in decisions) == [plan[1].pk, plan[2].pk]
    assert _statuses(plan) == ["rejected", "rejected", "rejected"]
    rows = Decision.objects.filter(proposal__in=plan[1:])
    assert {(d.verdict, d.reason, d.reason_text, d.reviewer_id) for d in rows} == {
        ("reject", "wrong_record", "The whole plan is for the wrong order", reviewer.pk)
    }
    assert AuditEvent.objects.filter(action="proposal.reject").count() == 3
    assert not Claim.objects.exists()
    item = WorkItem.objects.get(pk=plan[0].work_item_id)
    assert (item.status, item.succeeded) == (WorkItem.Status.RESOLVED, False)
    outcome = ItemOutcome.objects.get(work_item=item)
    assert outcome.did_nothing is True


def test_reject_the_rest_is_refused_while_another_reviewer_holds_an_action(
    workflow, reviewer, second_reviewer
):
    _supervised(workflow)
    plan = plan_factory(workflow=workflow, tools=("create_refund", "send_message", "send_message"))
    _decide(plan[0], reviewer, "reject")
    claims.claim_proposal(reviewer=second_reviewer, proposal=plan[2])
    claim = claims.claim_proposal(reviewer=reviewer, proposal=plan[1])
    with pytest.raises(services.DecisionRefused) as refused:
        services.plan_reject_rest(
            proposal_id=plan[1].pk,
            reviewer=reviewer,
            claim_token=claim.token,
            reason=RejectReason.OTHER,
        )
    assert refused.value.code == "rest_held"
    assert _statuses(plan) == ["rejected", "pending", "pending"]
    assert Claim.objects.get(proposal=plan[1]).reviewer == reviewer


def test_reject_the_rest_is_not_offered_in_shadow_or_before_a_rejection(workflow, reviewer):
    shadow = plan_factory(workflow=workflow, tools=("create_refund", "send_message"))
    _decide(shadow[0], reviewer, "reject")
    claim = claims.claim_proposal(reviewer=reviewer, proposal=shadow[1])
    with pytest.raises(services.DecisionRefused) as refused:
        services.plan_reject_rest(
            proposal_id=shadow[1].pk, reviewer=reviewer, claim_token=claim.token, reason="other"
        )
    assert refused.value.code == "rest_not_offered"
    _supervised(workflow)
    fresh = plan_factory(workflow=workflow, tools=("create_refund", "send_message"))
    claim = claims.claim_proposal(reviewer=reviewer, proposal=fresh[0])
    with pytest.raises(services.DecisionRefused):
        services.plan_reject_rest(
            proposal_id=fresh[0].pk, reviewer=reviewer, claim_token=claim.token, reason="other"
        )
    assert _statuses(fresh) == ["pending", "pending"]


# --- B. item outcomes from the console ------------------------------------------------


def test_the_last_judgment_of_a_plan_writes_the_items_outcome_once(workflow, reviewer):
    first, second = plan_factory(workflow=workflow, tools=("create_refund", "send_message"))
    _decide(first, reviewer, "reject")
    assert not ItemOutcome.objects.exists()
    _decide(second, reviewer, "reject")
    outcome = ItemOutcome.objects.get()
    assert outcome.work_item_id == first.work_item_id
    assert outcome.workflow == workflow
    assert (outcome.source, outcome.did_nothing) == (ItemOutcome.Source.CONSOLE, True)
    assert outcome.occurred_at <= timezone.now()


def test_an_outcome_already_written_is_never_written_twice(workflow, reviewer):
    (proposal,) = plan_factory(workflow=workflow)
    ItemOutcome.objects.create(
        work_item_id=proposal.work_item_id,
        workflow=workflow,
        source=ItemOutcome.Source.REPORT,
        did_nothing=True,
        occurred_at=timezone.now(),
    )
    _decide(proposal, reviewer)
    assert ItemOutcome.objects.get().source == ItemOutcome.Source.REPORT


def test_a_first_of_two_approvals_is_not_a_judgment_yet(workflow, reviewer, second_reviewer):
    _supervised(workflow)
    workflow.policy = {"two_approvers": {"classes": ["money"]}}
    workflow.save()
    (proposal,) = plan_factory(workflow=workflow)
    assert isinstance(_decide(proposal, reviewer), Approval)
    assert not ItemOutcome.objects.exists()
    _decide(proposal, second_reviewer)
    assert ItemOutcome.objects.get().did_nothing is False


def _escalation(workflow):
    return EscalationFactory(work_item__workflow=workflow)


def test_an_escalation_closed_says_the_human_did_nothing(workflow, reviewer):
    escalation = _escalation(workflow)
    services.escalation_resolve(
        escalation_id=escalation.pk, reviewer=reviewer, outcome="closed", packet_rating=3
    )
    outcome = ItemOutcome.objects.get(work_item=escalation.work_item)
    assert (outcome.source, outcome.did_nothing) == (ItemOutcome.Source.ESCALATION, True)
    assert not HumanAction.objects.exists()


def test_an_escalation_the_human_acted_on_records_each_action_as_missed(workflow, reviewer):
    escalation = _escalation(workflow)
    resolution = services.escalation_resolve(
        escalation_id=escalation.pk,
        reviewer=reviewer,
        outcome=EscalationResolution.Outcome.TOOK_ACTION,
        packet_rating=4,
        actions=[{"tool": "create_refund", "arguments": {**REFUND_ARGS, "amount": 30}}],
    )
    outcome = ItemOutcome.objects.get(work_item=escalation.work_item)
    assert outcome.did_nothing is False
    action = HumanAction.objects.get(outcome=outcome)
    assert action.tool == "create_refund"
    assert action.arguments["amount"] == "30"  # normalised by the tool's schema
    assert action.workflow == workflow
    assert resolution.action_taken == {
        "actions": [{"tool": "create_refund", "arguments": action.arguments}]
    }


def test_an_escalation_action_is_checked_against_its_tool(workflow, reviewer):
    escalation = _escalation(workflow)
    with pytest.raises(ValidationError) as invalid:
        services.escalation_resolve(
            escalation_id=escalation.pk,
            reviewer=reviewer,
            outcome=EscalationResolution.Outcome.TOOK_ACTION,
            packet_rating=4,
            actions=[{"tool": "create_refund", "arguments": {**REFUND_ARGS, "amount": "900"}}],
        )
    assert "action_arguments" in invalid.value.message_dict
    with pytest.raises(ValidationError) as unknown:
        services.escalation_resolve(
            escalation_id=escalation.pk,
            reviewer=reviewer,
            outcome=EscalationResolution.Outcome.TOOK_ACTION,
            packet_rating=4,
            actions=[{"tool": "wire_money", "arguments": {}}],
        )
    assert "action_tool" in unknown.value.message_dict
    with pytest.raises(ValidationError):
        services.escalation_resolve(
            escalation_id=escalation.pk,
            reviewer=reviewer,
            outcome=EscalationResolution.Outcome.CLOSED,
            packet_rating=4,
            actions=[{"tool": "create_refund", "arguments": REFUND_ARGS}],
        )
    assert not EscalationResolution.objects.exists()
    assert not ItemOutcome.objects.exists()


def test_an_escalation_sent_back_writes_no_outcome_and_an_existing_one_stays(workflow, reviewer):
    sent_back = _escalation(workflow)
    services.escalation_resolve(
        escalation_id=sent_back.pk, reviewer=reviewer, outcome="sent_back", packet_rating=2
    )
    assert not ItemOutcome.objects.exists()
    decided = _escalation(workflow)
    ItemOutcome.objects.create(
        work_item=decided.work_item,
        workflow=workflow,
        source=ItemOutcome.Source.CONSOLE,
        occurred_at=timezone.now(),
    )
    services.escalation_resolve(
        escalation_id=decided.pk,
        reviewer=reviewer,
        outcome=EscalationResolution.Outcome.TOOK_ACTION,
        packet_rating=5,
        actions=[{"tool": "create_refund", "arguments": REFUND_ARGS}],
    )
    assert ItemOutcome.objects.get().source == ItemOutcome.Source.CONSOLE
    assert not HumanAction.objects.exists()


# --- C. a decision names its card -----------------------------------------------------


def test_a_decision_on_a_card_whose_arguments_changed_is_refused(workflow, reviewer):
    (proposal,) = plan_factory(workflow=workflow)
    claim = claims.claim_proposal(reviewer=reviewer, proposal=proposal)
    with pytest.raises(services.DecisionRefused) as refused:
        services.proposal_decide(
            proposal_id=proposal.pk,
            reviewer=reviewer,
            claim_token=claim.token,
            verdict="accept",
            shown_proposal_id=str(proposal.pk),
            shown_arguments_hash="0" * 64,
        )
    assert refused.value.code == "card_replaced"
    assert refused.value.messages == [services.ERR_CARD_REPLACED]
    assert not Decision.objects.exists()
    assert Claim.objects.get().token == claim.token


def test_a_decision_naming_another_card_than_its_claim_is_refused(workflow, reviewer):
    first = plan_factory(workflow=workflow)[0]
    second = plan_factory(workflow=workflow)[0]
    claim = claims.claim_proposal(reviewer=reviewer, proposal=first)
    # The form of the card on screen names it; it is not the one posted to.
    with pytest.raises(services.DecisionRefused) as named_other:
        services.proposal_decide(
            proposal_id=second.pk,
            reviewer=reviewer,
            claim_token=claim.token,
            verdict="accept",
            shown_proposal_id=str(first.pk),
            shown_arguments_hash=first.arguments_hash,
        )
    assert named_other.value.code == "card_replaced"
    # A claim held on another card than the one decided: replaced, not merely lost.
    with pytest.raises(services.DecisionRefused) as elsewhere:
        services.proposal_decide(
            proposal_id=second.pk, reviewer=reviewer, claim_token=claim.token, verdict="accept"
        )
    assert elsewhere.value.code == "card_replaced"
    assert not Decision.objects.exists()
    decision = services.proposal_decide(
        proposal_id=first.pk,
        reviewer=reviewer,
        claim_token=claim.token,
        verdict="accept",
        shown_proposal_id=str(first.pk),
        shown_arguments_hash=first.arguments_hash,
    )
    assert decision.proposal_id == first.pk


# --- E. undo ----------------------------------------------------------------------------


def test_undo_within_the_window_restores_the_proposal_item_outcome_claim_and_metrics(
    workflow, reviewer
):
    first = plan_factory(workflow=workflow)[0]
    nxt = plan_factory(workflow=workflow)[0]
    scope = metrics.Scope.for_workflow(workflow, since=timezone.now() - timedelta(days=1))
    claim = claims.claim_proposal(reviewer=reviewer, proposal=first)
    decision, next_claim = services.proposal_decide_and_claim_next(
        proposal_id=first.pk,
        reviewer=reviewer,
        claim_token=claim.token,
        verdict="reject",
        reason=RejectReason.WRONG_AMOUNT,
        scope=workflow,
    )
    assert next_claim.proposal_id == nxt.pk
    assert metrics.agreement_for(scope).rejected == 1
    item = WorkItem.objects.get(pk=first.work_item_id)
    assert (item.status, item.succeeded) == (WorkItem.Status.RESOLVED, False)
    assert ItemOutcome.objects.filter(work_item=item).exists()

    back = services.decision_undo(reviewer=reviewer, decision_id=decision.pk, workflow=workflow)

    assert not Decision.objects.exists()
    assert metrics.agreement_for(scope).rejected == 0
    first.refresh_from_db()
    assert (first.status, first.decided_at) == (Proposal.Status.PENDING, None)
    item.refresh_from_db()
    assert (item.status, item.succeeded, item.resolved_at) == (
        WorkItem.Status.AWAITING_REVIEW,
        None,
        None,
    )
    assert not ItemOutcome.objects.exists()
    # The card is the reviewer's again; the next one they were handed is given back.
    assert back.proposal_id == first.pk
    assert list(Claim.objects.values_list("proposal_id", "reviewer_id")) == [
        (first.pk, reviewer.pk)
    ]
    undone = UndoneDecision.objects.get()
    assert (undone.decision_id, undone.proposal_id, undone.reviewer_id) == (
        decision.pk,
        first.pk,
        reviewer.pk,
    )
    assert (undone.verdict, undone.kind) == ("reject", "review")
    assert undone.decision["reason"] == "wrong_amount"
    event = AuditEvent.objects.get(action="proposal.undone")
    assert event.actor == reviewer
    assert event.data["decision"] == decision.pk
    # Decided again, it counts again.
    _decide(first, reviewer)
    assert metrics.agreement_for(scope).accepted == 1


def test_undo_after_the_window_is_refused(workflow, reviewer, monkeypatch):
    (proposal,) = plan_factory(workflow=workflow)
    decision = _decide(proposal, reviewer)
    later = timezone.now() + services.UNDO_WINDOW + timedelta(seconds=1)
    monkeypatch.setattr("reviews.services.timezone.now", lambda: later)
    with pytest.raises(services.DecisionRefused) as refused:
        services.decision_undo(reviewer=reviewer, decision_id=decision.pk)
    assert refused.value.messages == [services.ERR_UNDO_EXPIRED.format(seconds=30)]
    assert Decision.objects.filter(pk=decision.pk).exists()
    assert not UndoneDecision.objects.exists()


def test_undo_of_someone_elses_or_an_older_decision_is_refused(workflow, reviewer, second_reviewer):
    older, newer = plan_factory(workflow=workflow), plan_factory(workflow=workflow)
    first = _decide(older[0], reviewer)
    _decide(newer[0], reviewer)
    with pytest.raises(services.DecisionRefused) as not_latest:
        services.decision_undo(reviewer=reviewer, decision_id=first.pk)
    assert not_latest.value.code == "undo_not_latest"
    with pytest.raises(services.DecisionRefused) as not_theirs:
        services.decision_undo(reviewer=second_reviewer, decision_id=first.pk)
    assert not_theirs.value.code == "undo_not_yours"
    assert Decision.objects.count() == 2


def test_undo_after_an_action_of_the_plan_executed_is_refused(workflow, reviewer):
    _supervised(workflow)
    (proposal,) = plan_factory(workflow=workflow)
    decision = _decide(proposal, reviewer)
    Execution.objects.create(
        proposal=proposal,
        idempotency_key=f"proposal-{proposal.pk}-x",
        arguments=proposal.arguments,
        arguments_hash=proposal.arguments_hash,
        status=Execution.Status.RUNNING,
    )
    with pytest.raises(services.DecisionRefused) as refused:
        services.decision_undo(reviewer=reviewer, decision_id=decision.pk)
    assert refused.value.messages == [services.ERR_UNDO_EXECUTED]
    assert Decision.objects.filter(pk=decision.pk).exists()


def test_undo_of_an_approval_sent_to_run_stops_it_before_it_starts(workflow, reviewer):
    _supervised(workflow)
    (proposal,) = plan_factory(workflow=workflow)
    decision = _decide(proposal, reviewer)
    assert WorkItem.objects.get(pk=proposal.work_item_id).status == WorkItem.Status.EXECUTING
    services.decision_undo(reviewer=reviewer, decision_id=decision.pk)
    # The task sent before the undo finds nothing approved.
    assert proposal_execute(proposal_id=proposal.pk) is None
    assert not Execution.objects.exists()
    assert WorkItem.objects.get(pk=proposal.work_item_id).status == (
        WorkItem.Status.AWAITING_REVIEW
    )


def test_only_a_review_decision_can_be_undone(workflow, reviewer):
    sample = ProposalFactory(
        run__work_item__workflow=workflow,
        status=Proposal.Status.EXECUTED,
        sampled_for_review=True,
    )
    decision = _decide(sample, reviewer)
    assert decision.kind == Decision.Kind.SAMPLE
    with pytest.raises(services.DecisionRefused) as refused:
        services.decision_undo(reviewer=reviewer, decision_id=decision.pk)
    assert refused.value.code == "undo_kind"
    with pytest.raises(services.DecisionRefused) as gone:
        services.decision_undo(reviewer=reviewer, decision_id=decision.pk + 1000)
    assert gone.value.code == "undo_gone"


def test_undoing_a_second_approval_keeps_the_first(workflow, reviewer, second_reviewer):
    _supervised(workflow)
    workflow.policy = {"two_approvers": {"classes": ["money"]}}
    workflow.save()
    (proposal,) = plan_factory(workflow=workflow)
    _decide(proposal, reviewer)
    decision = _decide(proposal, second_reviewer)
    services.decision_undo(reviewer=second_reviewer, decision_id=decision.pk)
    assert list(Approval.objects.values_list("reviewer_id", flat=True)) == [reviewer.pk]
    assert Proposal.objects.get(pk=proposal.pk).status == Proposal.Status.PENDING


def test_undo_removes_the_outcome_the_last_judgment_wrote(workflow, reviewer):
    first, second = plan_factory(workflow=workflow, tools=("create_refund", "send_message"))
    _decide(first, reviewer, "reject")
    decision = _decide(second, reviewer)
    assert ItemOutcome.objects.exists()
    services.decision_undo(reviewer=reviewer, decision_id=decision.pk)
    assert not ItemOutcome.objects.exists()
    assert _statuses([first, second]) == ["rejected", "pending"]


@ON_POSTGRESQL
def test_the_database_refuses_to_change_or_remove_a_decision_outside_an_undo(workflow, reviewer):
    (proposal,) = plan_factory(workflow=workflow)
    decision = _decide(proposal, reviewer)
    errors = (IntegrityError, InternalError, ProgrammingError)
    with pytest.raises(errors, match="append-only"), transaction.atomic():
        Decision.objects.filter(pk=decision.pk).update(verdict="reject", reason="other")
    with pytest.raises(errors, match="audited undo"), transaction.atomic():
        Decision.objects.filter(pk=decision.pk).delete()
    with (
        pytest.raises(errors, match="audited undo"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM reviews_decision WHERE id = %s", [decision.pk])
    assert Decision.objects.filter(pk=decision.pk).exists()


@ON_POSTGRESQL
def test_the_database_refuses_to_remove_a_decision_past_its_window_even_with_a_record(
    workflow, reviewer
):
    (proposal,) = plan_factory(workflow=workflow)
    Proposal.objects.filter(pk=proposal.pk).update(status=Proposal.Status.ACCEPTED)
    old = timezone.now() - timedelta(minutes=5)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO reviews_decision (proposal_id, reviewer_id, kind, verdict, "
            "final_arguments, final_arguments_hash, diff, reason, reason_text, "
            "autonomy_level, seconds_spent, created_at) VALUES "
            "(%s, %s, 'review', 'accept', '{}', '', '{}', '', '', 'shadow', 1, %s) RETURNING id",
            [proposal.pk, reviewer.pk, old],
        )
        (decision_id,) = cursor.fetchone()
    UndoneDecision.objects.create(
        decision_id=decision_id,
        proposal=proposal,
        reviewer=reviewer,
        verdict="accept",
        kind="review",
        decision={},
        decided_at=old,
    )
    with (
        pytest.raises((InternalError, ProgrammingError), match="undo window"),
        transaction.atomic(),
    ):
        Decision.objects.filter(pk=decision_id).delete()
    assert Decision.objects.filter(pk=decision_id).exists()

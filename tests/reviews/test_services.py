from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from agents.models import Escalation, Proposal, WorkItem
from governance.models import AuditEvent, AutonomyLevel
from reviews import claims, services
from reviews.models import Claim, Decision, EscalationResolution, ItemOutcome, RejectReason
from reviews.selectors import QueueFilters, oldest_pending_at, queue_sizes
from tests.factories import EscalationFactory, ProposalFactory
from tests.reviews.factories import plan_factory

pytestmark = pytest.mark.django_db


class Sent:
    """The first argument of every ``name`` task sent so far (compares as a list)."""

    def __init__(self, sent: list[tuple[str, tuple]], name: str) -> None:
        self.sent, self.name = sent, name

    def __eq__(self, other: object) -> bool:
        return [args[0] for task, args in self.sent if task == self.name] == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr([args[0] for task, args in self.sent if task == self.name])


def _expire(claim: Claim) -> None:
    Claim.objects.filter(pk=claim.pk).update(
        claimed_at=timezone.now() - timedelta(hours=1),
        expires_at=timezone.now() - timedelta(seconds=1),
    )


def test_claim_next_takes_the_highest_priority_then_the_oldest(workflow, reviewer):
    old = ProposalFactory(run__work_item__workflow=workflow)
    ProposalFactory(run__work_item__workflow=workflow)
    urgent = ProposalFactory(run__work_item__workflow=workflow, priority=5)
    assert claims.claim_next(reviewer=reviewer, workflow=workflow).proposal_id == urgent.pk
    claims.claim_release(reviewer=reviewer, claim_token=Claim.objects.get().token)
    Proposal.objects.filter(pk=urgent.pk).update(status=Proposal.Status.ACCEPTED)
    assert claims.claim_next(reviewer=reviewer, workflow=workflow).proposal_id == old.pk


def test_claim_next_returns_the_reviewers_live_claim_first(workflow, reviewer):
    ProposalFactory(run__work_item__workflow=workflow)
    ProposalFactory(run__work_item__workflow=workflow)
    first = claims.claim_next(reviewer=reviewer, workflow=workflow)
    again = claims.claim_next(reviewer=reviewer, workflow=workflow)
    assert again.pk == first.pk
    assert again.token == first.token
    assert Claim.objects.count() == 1


def test_second_reviewer_cannot_claim_a_claimed_proposal(workflow, reviewer, second_reviewer):
    only = ProposalFactory(run__work_item__workflow=workflow)
    assert claims.claim_next(reviewer=reviewer, workflow=workflow).proposal_id == only.pk
    assert claims.claim_next(reviewer=second_reviewer, workflow=workflow) is None
    assert claims.claim_proposal(reviewer=second_reviewer, proposal=only) is None


def test_an_expired_claim_is_taken_over(workflow, reviewer, second_reviewer):
    only = ProposalFactory(run__work_item__workflow=workflow)
    mine = claims.claim_next(reviewer=reviewer, workflow=workflow)
    _expire(mine)
    theirs = claims.claim_next(reviewer=second_reviewer, workflow=workflow)
    assert theirs.proposal_id == only.pk
    assert theirs.token != mine.token
    claim = Claim.objects.get()
    assert claim.reviewer == second_reviewer
    assert claim.expires_at > timezone.now()


def test_claim_next_honours_filters(workflow, reviewer):
    ProposalFactory(run__work_item__workflow=workflow, tool="create_refund")
    flagged = ProposalFactory(
        run__work_item__workflow=workflow, tool="send_message", flagged_injection=True
    )
    claim = claims.claim_next(
        reviewer=reviewer, workflow=workflow, filters=QueueFilters(flagged=True)
    )
    assert claim.proposal_id == flagged.pk


def test_claim_next_over_all_queues_only_sees_granted_workflows(workflow, other_workflow, reviewer):
    ProposalFactory(run__work_item__workflow=other_workflow, priority=9)
    mine = ProposalFactory(run__work_item__workflow=workflow)
    assert claims.claim_next(reviewer=reviewer).proposal_id == mine.pk
    claims.claim_release(reviewer=reviewer, claim_token=Claim.objects.get().token)
    Proposal.objects.filter(pk=mine.pk).update(status=Proposal.Status.ACCEPTED)
    assert claims.claim_next(reviewer=reviewer) is None


def test_accept_records_a_decision_and_releases_the_claim(workflow, reviewer):
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    Claim.objects.filter(pk=claim.pk).update(claimed_at=timezone.now() - timedelta(seconds=42))
    decision = services.proposal_decide(
        proposal_id=proposal.pk, reviewer=reviewer, claim_token=claim.token, verdict="accept"
    )
    proposal.refresh_from_db()
    assert proposal.status == Proposal.Status.ACCEPTED
    assert proposal.decided_at is not None
    assert decision.verdict == Decision.Verdict.ACCEPT
    assert decision.autonomy_level == AutonomyLevel.SHADOW
    assert 42 <= decision.seconds_spent <= 45
    assert decision.final_arguments_hash
    assert not Claim.objects.exists()
    event = AuditEvent.objects.get(action="proposal.accept")
    assert event.actor == reviewer
    assert event.object_id == str(proposal.pk)


def test_time_spent_is_capped(workflow, reviewer):
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    Claim.objects.filter(pk=claim.pk).update(claimed_at=timezone.now() - timedelta(hours=3))
    decision = services.proposal_decide(
        proposal_id=proposal.pk, reviewer=reviewer, claim_token=claim.token, verdict="accept"
    )
    assert decision.seconds_spent == services.MAX_SECONDS_PER_DECISION


def test_edit_stores_the_field_level_diff(workflow, reviewer):
    proposal = plan_factory(workflow=workflow, tools=("create_refund",))[0]
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    decision = services.proposal_decide(
        proposal_id=proposal.pk,
        reviewer=reviewer,
        claim_token=claim.token,
        verdict="edit",
        final_arguments={**proposal.arguments, "amount": "30"},
    )
    assert decision.diff == {"amount": ["42.00", "30"]}
    assert decision.final_arguments["amount"] == "30"
    proposal.refresh_from_db()
    assert proposal.status == Proposal.Status.EDITED


def test_invalid_edit_saves_nothing_and_reports_fields(workflow, reviewer):
    proposal = plan_factory(workflow=workflow)[0]
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    with pytest.raises(services.ArgumentsInvalid) as caught:
        services.proposal_decide(
            proposal_id=proposal.pk,
            reviewer=reviewer,
            claim_token=claim.token,
            verdict="edit",
            final_arguments={**proposal.arguments, "amount": "9999", "order_number": "nope"},
        )
    assert set(caught.value.field_errors) == {"amount", "order_number"}
    proposal.refresh_from_db()
    assert proposal.status == Proposal.Status.PENDING
    assert not Decision.objects.exists()
    assert Claim.objects.filter(token=claim.token).exists()


def test_an_edit_that_changes_nothing_is_refused(workflow, reviewer):
    proposal = plan_factory(workflow=workflow)[0]
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    with pytest.raises(services.ArgumentsInvalid) as caught:
        services.proposal_decide(
            proposal_id=proposal.pk,
            reviewer=reviewer,
            claim_token=claim.token,
            verdict="edit",
            final_arguments={**proposal.arguments, "amount": "42"},
        )
    assert caught.value.field_errors == {"__all__": [services.ERR_NOTHING_EDITED]}


def test_reject_needs_a_reason_from_the_taxonomy(workflow, reviewer):
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    with pytest.raises(ValidationError) as caught:
        services.proposal_decide(
            proposal_id=proposal.pk, reviewer=reviewer, claim_token=claim.token, verdict="reject"
        )
    assert caught.value.message_dict == {"reason": [services.ERR_REASON_REQUIRED]}
    decision = services.proposal_decide(
        proposal_id=proposal.pk,
        reviewer=reviewer,
        claim_token=claim.token,
        verdict="reject",
        reason=RejectReason.WRONG_AMOUNT,
        reason_text="Only one item was broken.",
    )
    assert decision.reason == RejectReason.WRONG_AMOUNT
    assert decision.reason_text == "Only one item was broken."


def test_a_decision_with_a_lost_claim_is_refused(workflow, reviewer, second_reviewer):
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    mine = claims.claim_next(reviewer=reviewer, workflow=workflow)
    _expire(mine)
    theirs = claims.claim_next(reviewer=second_reviewer, workflow=workflow)
    with pytest.raises(services.DecisionRefused) as caught:
        services.proposal_decide(
            proposal_id=proposal.pk, reviewer=reviewer, claim_token=mine.token, verdict="accept"
        )
    assert caught.value.messages == [services.ERR_CLAIM_LOST]
    services.proposal_decide(
        proposal_id=proposal.pk,
        reviewer=second_reviewer,
        claim_token=theirs.token,
        verdict="accept",
    )
    assert Decision.objects.get().reviewer == second_reviewer


def test_an_expired_claim_nobody_took_can_still_decide(workflow, reviewer):
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    _expire(claim)
    services.proposal_decide(
        proposal_id=proposal.pk, reviewer=reviewer, claim_token=claim.token, verdict="accept"
    )
    assert Decision.objects.count() == 1


def test_deciding_twice_is_refused_and_applied_once(workflow, reviewer):
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
    services.proposal_decide(
        proposal_id=proposal.pk, reviewer=reviewer, claim_token=claim.token, verdict="accept"
    )
    with pytest.raises(services.DecisionRefused) as caught:
        services.proposal_decide(
            proposal_id=proposal.pk,
            reviewer=reviewer,
            claim_token=claim.token,
            verdict="reject",
            reason=RejectReason.OTHER,
        )
    assert caught.value.messages == [services.ERR_ALREADY_DECIDED.format(status="accepted")]
    assert Decision.objects.count() == 1
    assert AuditEvent.objects.filter(action__startswith="proposal.").count() == 1


def test_a_decision_on_another_workflows_proposal_is_not_found(workflow, other_workflow, reviewer):
    proposal = ProposalFactory(run__work_item__workflow=other_workflow)
    with pytest.raises(Proposal.DoesNotExist):
        services.proposal_decide(
            proposal_id=proposal.pk,
            reviewer=reviewer,
            claim_token="x",
            verdict="accept",
            workflow=workflow,
        )


def test_queue_sizes_count_pending_and_find_the_oldest(workflow):
    first = ProposalFactory(run__work_item__workflow=workflow, priority=0)
    ProposalFactory(run__work_item__workflow=workflow, priority=3)
    Proposal.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(hours=2))
    EscalationFactory(work_item__workflow=workflow)
    [size] = queue_sizes([workflow])
    assert size.pending == 2
    assert size.escalations == 1
    assert abs((size.oldest_pending_at - (timezone.now() - timedelta(hours=2))).total_seconds()) < 5
    Proposal.objects.update(status=Proposal.Status.ACCEPTED)
    assert oldest_pending_at(workflow.pk) is None


def test_escalation_resolve_records_rating_and_resolves_the_item(workflow, reviewer):
    escalation = EscalationFactory(work_item__workflow=workflow)
    resolution = services.escalation_resolve(
        escalation_id=escalation.pk,
        reviewer=reviewer,
        outcome=EscalationResolution.Outcome.TOOK_ACTION,
        note="Refunded by hand.",
        packet_rating=4,
        minutes_saved=12,
        seconds_spent=90,
    )
    escalation.refresh_from_db()
    assert escalation.status == Escalation.Status.RESOLVED
    assert resolution.packet_rating == 4
    assert resolution.minutes_saved == 12
    item = escalation.work_item
    item.refresh_from_db()
    assert item.status == WorkItem.Status.RESOLVED
    assert AuditEvent.objects.filter(action="escalation.resolved").count() == 1
    with pytest.raises(services.DecisionRefused):
        services.escalation_resolve(
            escalation_id=escalation.pk,
            reviewer=reviewer,
            outcome=EscalationResolution.Outcome.CLOSED,
            packet_rating=3,
        )


def test_escalation_rating_must_be_1_to_5(workflow, reviewer):
    escalation = EscalationFactory(work_item__workflow=workflow)
    with pytest.raises(ValidationError):
        services.escalation_resolve(
            escalation_id=escalation.pk,
            reviewer=reviewer,
            outcome=EscalationResolution.Outcome.CLOSED,
            packet_rating=6,
        )
    assert not EscalationResolution.objects.exists()


def test_budget_use_is_on_the_card(workflow, reviewer):
    from reviews.selectors import card_for

    proposal = plan_factory(workflow=workflow)[0]
    card = card_for(proposal_id=proposal.pk)
    labels = {b.label: (b.used, b.limit) for b in card.budget}
    assert labels["Tool calls"] == (2, workflow.max_tool_calls)
    assert labels["Cost"][0] == Decimal("0.000207")
    assert [s.index for s in card.steps] == [1, 2]


def _supervised(workflow) -> None:
    from governance.models import ToolGrant

    workflow.autonomy_level = AutonomyLevel.SUPERVISED
    workflow.save()
    ToolGrant.objects.filter(workflow=workflow).update(autonomy_level=AutonomyLevel.SUPERVISED)


def _decide_all(workflow, reviewer, verdicts):
    for verdict in verdicts:
        claim = claims.claim_next(reviewer=reviewer, workflow=workflow)
        services.proposal_decide(
            proposal_id=claim.proposal_id,
            reviewer=reviewer,
            claim_token=claim.token,
            verdict=verdict,
            reason=RejectReason.WRONG_ACTION if verdict == "reject" else "",
        )


def test_supervised_plan_executes_only_once_every_action_is_approved(
    workflow, reviewer, django_capture_on_commit_callbacks, monkeypatch
):

    _supervised(workflow)
    plan = plan_factory(workflow=workflow, tools=("create_refund", "send_message"))
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr("agents.queue.send", lambda name, *args: sent.append((name, args)) or True)
    enqueued = Sent(sent, "agents.execute_action")
    with django_capture_on_commit_callbacks(execute=True):
        _decide_all(workflow, reviewer, ["accept"])
    assert enqueued == []
    with django_capture_on_commit_callbacks(execute=True):
        _decide_all(workflow, reviewer, ["accept"])
    assert enqueued == [plan[0].pk]
    assert Decision.objects.filter(autonomy_level=AutonomyLevel.SUPERVISED).count() == 2


def test_in_shadow_a_rejected_step_leaves_the_rest_to_be_judged_on_its_own(workflow, reviewer):
    """Before, rejecting the first action cancelled the second (unjudged), though it was
    often the agent's right final attempt. Now each is judged on its own."""
    first, second = plan_factory(workflow=workflow, tools=("create_refund", "send_message"))
    _decide_all(workflow, reviewer, ["reject"])
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == Proposal.Status.REJECTED
    assert second.status == Proposal.Status.PENDING
    assert not ItemOutcome.objects.exists()
    assert claims.claim_next(reviewer=reviewer, workflow=workflow).proposal_id == second.pk
    _decide_all(workflow, reviewer, ["accept"])
    item = WorkItem.objects.get(pk=first.work_item_id)
    assert (item.status, item.succeeded) == (WorkItem.Status.RESOLVED, False)
    outcome = ItemOutcome.objects.get(work_item=item)
    assert (outcome.source, outcome.did_nothing) == (ItemOutcome.Source.CONSOLE, False)


def test_the_claim_upsert_is_a_compare_and_set(workflow, reviewer, second_reviewer):
    """The database decides who holds a proposal, even where FOR UPDATE is a no-op (SQLite)."""
    proposal = ProposalFactory(run__work_item__workflow=workflow)
    now = timezone.now()
    first = claims._claim_upsert(proposal_id=proposal.pk, reviewer_id=reviewer.pk, now=now)
    assert first is not None
    assert (
        claims._claim_upsert(proposal_id=proposal.pk, reviewer_id=second_reviewer.pk, now=now)
        is None
    )
    later = first.expires_at + timedelta(seconds=1)
    taken = claims._claim_upsert(proposal_id=proposal.pk, reviewer_id=second_reviewer.pk, now=later)
    assert taken is not None
    assert Claim.objects.get().token == taken.token
    assert Claim.objects.get().reviewer == second_reviewer


def test_sending_an_escalation_back_queues_a_new_attempt(
    workflow, reviewer, django_capture_on_commit_callbacks, monkeypatch
):
    from agents.models import Run
    from tests.factories import RunFactory

    escalation = EscalationFactory(work_item__workflow=workflow)
    RunFactory(work_item=escalation.work_item, status=Run.Status.ESCALATED)
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr("agents.queue.send", lambda name, *args: sent.append((name, args)) or True)
    dispatched = Sent(sent, "agents.run_agent")
    with django_capture_on_commit_callbacks(execute=True):
        services.escalation_resolve(
            escalation_id=escalation.pk,
            reviewer=reviewer,
            outcome=EscalationResolution.Outcome.SENT_BACK,
            packet_rating=2,
        )
    item = escalation.work_item
    item.refresh_from_db()
    assert item.status == WorkItem.Status.RECEIVED
    assert list(item.runs.order_by("attempt").values_list("attempt", "status")) == [
        (1, Run.Status.ESCALATED),
        (2, Run.Status.QUEUED),
    ]
    assert dispatched == [item.pk]


def test_capped_counts_never_sort_the_queue(workflow):
    """A sort under the LIMIT would read every pending row: seconds at a million."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ProposalFactory(run__work_item__workflow=workflow)
    with CaptureQueriesContext(connection) as queries:
        queue_sizes([workflow])
    # One statement per workflow: both capped counts, both oldest ages.
    assert len(queries.captured_queries) == 1
    sql = queries.captured_queries[0]["sql"]
    assert sql.count("SELECT COUNT(*)") == 2
    assert "ORDER BY" not in sql

"""What reviewers do: decide a proposal they hold a claim on (``reviews.claims``),
and resolve escalations."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from agents import queue, states
from agents.models import Escalation, Proposal, WorkItem
from agents.services import plan_dispatch_ready, work_item_retry
from agents.tools.base import arguments_hash
from governance import sqlkit
from governance.audit import audit_append
from governance.breaker import critical_reason
from governance.models import AutonomyLevel, Workflow
from reviews import claims
from reviews import sql as reviews_sql
from reviews import tools as review_tools
from reviews.models import Approval, Claim, Decision, EscalationResolution, RejectReason
from reviews.selectors import (
    GrantRead,
    QueueFilters,
    approvers_required,
    grant_read,
    is_sample,
    tool_and_level_read,
)

ERR_CLAIM_LOST = (
    "Your claim on this proposal was lost (it expired and another reviewer took it, "
    "or it was released). Nothing was saved."
)
ERR_ALREADY_DECIDED = "This proposal was already decided ({status}). Nothing was saved."
ERR_UNKNOWN_VERDICT = "“{verdict}” is not a decision: accept, edit or reject."
ERR_REASON_REQUIRED = "Choose a reason for the rejection."
ERR_UNKNOWN_REASON = "“{reason}” is not a rejection reason."
ERR_NOTHING_EDITED = "You changed nothing. Accept the proposal instead, or change a field."
ERR_ESCALATION_RESOLVED = "This escalation was already resolved. Nothing was saved."
ERR_UNKNOWN_OUTCOME = "“{outcome}” is not a way to resolve an escalation."
ERR_RATING_RANGE = "Rate the packet from 1 (useless) to 5 (everything I needed)."
ERR_MINUTES_SAVED = "Minutes saved cannot be negative."
ERR_AUTO_IN_FLIGHT = (
    "This action is executing automatically; it can be reviewed only if it is sampled."
)
ERR_SAME_APPROVER = (
    "You already approved this action. It needs a second approval from a different reviewer."
)
ERR_SECOND_MUST_MATCH = (
    "A second approval confirms the arguments the first reviewer approved. "
    "If they are wrong, reject the proposal instead of editing it."
)

# A reviewer who leaves a card open over lunch did not spend an hour deciding it.
MAX_SECONDS_PER_DECISION = 15 * 60

_STATUS_FOR_VERDICT = {
    Decision.Verdict.ACCEPT: Proposal.Status.ACCEPTED,
    Decision.Verdict.EDIT: Proposal.Status.EDITED,
    Decision.Verdict.REJECT: Proposal.Status.REJECTED,
}


class DecisionRefused(ValidationError):
    """The decision cannot apply any more (claim lost, already decided): not a form error."""


class ArgumentsInvalid(ValidationError):
    """The edited arguments do not validate; ``field_errors`` maps field -> messages."""

    def __init__(self, field_errors: dict[str, list[str]]) -> None:
        super().__init__(dict(field_errors.items()))
        self.field_errors = field_errors


def _breaker_dispatch(*, decision: Decision, workflow: Workflow, tool: str, level: str) -> None:
    """After the decision commits, let the circuit breaker look at the tool: at once
    for a critical rejection, and for any decision on a tool above supervised."""
    above = AutonomyLevel.rank(level) > AutonomyLevel.rank(AutonomyLevel.SUPERVISED)
    if not (above or decision.is_critical):
        return
    critical = ""
    if decision.is_critical:
        label = decision.get_reason_display()
        critical = critical_reason(reason_label=label, proposal_id=decision.proposal_id)
    workflow_id = workflow.pk
    transaction.on_commit(lambda: queue.send(queue.BREAKER_CHECK, workflow_id, tool, critical))


def _lock_decidable(
    *, proposal_id: int, workflow: Workflow | None
) -> tuple[Proposal, bool, GrantRead]:
    """The proposal, locked, whether this is a post-hoc sample review, and its grant."""
    # Lock the whole plan, in sequence order, in one statement: the plan dispatch
    # that follows locks it too, and two reviewers deciding two actions of one plan
    # who each locked only their own first deadlocked there (found by the soak).
    rows = reviews_sql.plan_locked(
        proposal_id=proposal_id, workflow_id=workflow.pk if workflow is not None else None
    )
    width = sqlkit.width(Proposal)
    row = next((r for r in rows if r[0] == proposal_id), None)
    if row is None:
        raise Proposal.DoesNotExist(f"Proposal {proposal_id} does not exist.")
    proposal = sqlkit.build(Proposal, row)
    grant = grant_read(row, width)
    if workflow is not None:
        proposal.workflow = workflow  # the caller's (access-checked) row: no second read
    if is_sample(proposal) and not Decision.objects.filter(proposal=proposal).exists():
        return proposal, True, grant
    if proposal.status != Proposal.Status.PENDING:
        raise DecisionRefused(
            ERR_ALREADY_DECIDED.format(status=proposal.get_status_display().lower()),
            code="already_decided",
        )
    if proposal.auto_executed:
        raise DecisionRefused(ERR_AUTO_IN_FLIGHT, code="auto_in_flight")
    return proposal, False, grant


def _proposal_decide(
    *,
    proposal_id: int,
    reviewer: AbstractBaseUser,
    claim_token: uuid.UUID | str,
    verdict: str,
    final_arguments: dict[str, Any] | None = None,
    reason: str = "",
    reason_text: str = "",
    seconds_spent: int | None = None,
    workflow: Workflow | None = None,
) -> Decision | Approval:
    """Record a reviewer's decision on a proposal they hold a claim on.

    Locks the proposal, checks the claim token (refused if the claim was lost or
    the proposal was already decided), validates edited arguments against the
    tool's model, writes the Decision (one per proposal, enforced by the
    database), releases the claim, audits, and lets the plan dispatcher act.
    ``seconds_spent`` defaults to the time since the claim was taken, capped.

    An executed action sampled for post-hoc review gets a ``SAMPLE`` decision:
    nothing executes, and it feeds the circuit breaker's sampled agreement. An
    action above the workflow's two-approver threshold returns the first
    ``Approval`` and stays pending until a different reviewer approves it.
    """
    if verdict not in _STATUS_FOR_VERDICT:
        raise ValidationError(ERR_UNKNOWN_VERDICT.format(verdict=verdict), code="verdict")
    proposal, sample, grant = _lock_decidable(proposal_id=proposal_id, workflow=workflow)
    # Released here already: anything refused below rolls the transaction back.
    claim = claims.claim_take(
        proposal_id=proposal.pk, reviewer_id=reviewer.pk, claim_token=claim_token
    )
    if claim is None:
        raise DecisionRefused(ERR_CLAIM_LOST, code="claim_lost")

    workflow = proposal.workflow
    # The level at decision time, as the plan dispatcher will see it: it decides
    # whether this approval executes.
    tool, level = tool_and_level_read(workflow=workflow, name=proposal.tool, grant=grant)
    proposed = review_tools.normalised(tool, proposal.arguments)
    diff: dict[str, list[Any]] = {}
    if verdict == Decision.Verdict.REJECT:
        if not reason:
            raise ValidationError({"reason": [ERR_REASON_REQUIRED]}, code="reason")
        if reason not in RejectReason.values:
            raise ValidationError(
                {"reason": [ERR_UNKNOWN_REASON.format(reason=reason)]}, code="reason"
            )
        final = proposed
    elif verdict == Decision.Verdict.EDIT:
        final, errors = review_tools.validate_arguments(tool, dict(final_arguments or {}))
        if errors or final is None:
            raise ArgumentsInvalid(errors)
        diff = review_tools.arguments_diff(proposed, final, tool)
        if not diff:
            raise ArgumentsInvalid({"__all__": [ERR_NOTHING_EDITED]})
        reason, reason_text = "", reason_text.strip()
    else:
        final, reason, reason_text = proposed, "", ""

    now = timezone.now()
    if seconds_spent is None:
        seconds_spent = int((now - claim.claimed_at).total_seconds())
    seconds_spent = max(0, min(int(seconds_spent), MAX_SECONDS_PER_DECISION))
    approvers: list[int] = []
    if not sample and verdict != Decision.Verdict.REJECT:
        needed = approvers_required(proposal, level=level, arguments=final)
        if needed > 1:
            prior = list(Approval.objects.filter(proposal=proposal).order_by("pk"))
            if any(a.reviewer_id == reviewer.pk for a in prior):
                raise DecisionRefused(ERR_SAME_APPROVER, code="same_approver")
            if len(prior) + 1 < needed:
                return _approval_record(
                    proposal=proposal,
                    reviewer=reviewer,
                    verdict=verdict,
                    final=final,
                    diff=diff,
                    reason_text=reason_text,
                    seconds_spent=seconds_spent,
                    needed=needed,
                )
            first = prior[0]
            if verdict == Decision.Verdict.EDIT and arguments_hash(final) != (
                first.final_arguments_hash
            ):
                raise ArgumentsInvalid({"__all__": [ERR_SECOND_MUST_MATCH]})
            # The decision carries what the first reviewer approved; the second confirms it.
            verdict, final, diff = first.verdict, first.final_arguments, first.diff
            Approval.objects.create(
                proposal=proposal,
                reviewer=reviewer,
                verdict=verdict,
                final_arguments=final,
                final_arguments_hash=arguments_hash(final),
                diff=diff,
                seconds_spent=seconds_spent,
            )
            approvers = [a.reviewer_id for a in prior] + [reviewer.pk]
    decision = Decision(
        proposal=proposal,
        reviewer=reviewer,
        kind=Decision.Kind.SAMPLE if sample else Decision.Kind.REVIEW,
        verdict=verdict,
        final_arguments=final,
        final_arguments_hash=arguments_hash(final),
        diff=diff,
        reason=reason if verdict == Decision.Verdict.REJECT else "",
        reason_text=reason_text.strip(),
        autonomy_level=level,
        seconds_spent=seconds_spent,
    )
    # Hand-written INSERT and UPDATE (governance.sqlkit): every decision writes both.
    sqlkit.insert([decision])
    proposal.decided_at = now
    if sample:  # what happened, happened: a sample review changes no status
        sqlkit.update(Proposal, proposal.pk, {"decided_at": now})
    else:
        proposal.status = _STATUS_FOR_VERDICT[verdict]
        states.proposal_move(proposal.pk, to=proposal.status, decided_at=now)
    audit_append(
        action=f"proposal.sample.{verdict}" if sample else f"proposal.{verdict}",
        actor=reviewer,
        workflow=workflow,
        obj=proposal,
        data={
            "tool": proposal.tool,
            "run": proposal.run_id,
            "sequence": proposal.sequence,
            "verdict": verdict,
            "kind": decision.kind,
            "reason": decision.reason,
            "diff": diff,
            "final_arguments_hash": decision.final_arguments_hash,
            "autonomy_level": decision.autonomy_level,
            "seconds_spent": seconds_spent,
            **({"approvers": approvers} if approvers else {}),
        },
    )
    if not sample:
        plan_dispatch_ready(run_id=proposal.run_id)
    _breaker_dispatch(decision=decision, workflow=workflow, tool=proposal.tool, level=level)
    return decision


# The service: the same function, in its own transaction (a savepoint when nested).
proposal_decide = transaction.atomic(_proposal_decide)


@transaction.atomic
def proposal_decide_and_claim_next(
    *,
    proposal_id: int,
    reviewer: AbstractBaseUser,
    claim_token: uuid.UUID | str,
    verdict: str,
    final_arguments: dict[str, Any] | None = None,
    reason: str = "",
    reason_text: str = "",
    workflow: Workflow | None = None,
    scope: Workflow | None = None,
    filters: QueueFilters | None = None,
) -> tuple[Decision | Approval, Claim | None]:
    """Decide (``proposal_decide``), then claim the reviewer's next proposal in
    ``scope`` (one workflow, or None for all theirs): the reviewer's keyboard
    loop, in one transaction with one commit and no savepoints."""
    decision = _proposal_decide(
        proposal_id=proposal_id,
        reviewer=reviewer,
        claim_token=claim_token,
        verdict=verdict,
        final_arguments=final_arguments,
        reason=reason,
        reason_text=reason_text,
        workflow=workflow,
    )
    return decision, claims.claim_next(reviewer=reviewer, workflow=scope, filters=filters)


def _approval_record(
    *,
    proposal: Proposal,
    reviewer: AbstractBaseUser,
    verdict: str,
    final: dict[str, Any],
    diff: dict[str, list[Any]],
    reason_text: str,
    seconds_spent: int,
    needed: int,
) -> Approval:
    """The first of two approvals: recorded; the proposal stays pending, unclaimed
    (the decision released the claim)."""
    approval = Approval.objects.create(
        proposal=proposal,
        reviewer=reviewer,
        verdict=verdict,
        final_arguments=final,
        final_arguments_hash=arguments_hash(final),
        diff=diff,
        reason_text=reason_text.strip(),
        seconds_spent=seconds_spent,
    )
    audit_append(
        action="proposal.approval_recorded",
        actor=reviewer,
        workflow=proposal.workflow,
        obj=proposal,
        data={
            "tool": proposal.tool,
            "verdict": verdict,
            "final_arguments_hash": approval.final_arguments_hash,
            "approvals": Approval.objects.filter(proposal=proposal).count(),
            "needed": needed,
        },
    )
    return approval


@transaction.atomic
def escalation_resolve(
    *,
    escalation_id: int,
    reviewer: AbstractBaseUser,
    outcome: str,
    note: str = "",
    packet_rating: int,
    minutes_saved: int = 0,
    seconds_spent: int = 0,
    workflow: Workflow | None = None,
) -> EscalationResolution:
    """Close an escalation: the reviewer took the action, closed it, or sent it back."""
    if outcome not in EscalationResolution.Outcome.values:
        raise ValidationError(
            {"outcome": [ERR_UNKNOWN_OUTCOME.format(outcome=outcome)]}, code="outcome"
        )
    if not 1 <= int(packet_rating) <= 5:
        raise ValidationError({"packet_rating": [ERR_RATING_RANGE]}, code="rating")
    if int(minutes_saved) < 0:
        raise ValidationError({"minutes_saved": [ERR_MINUTES_SAVED]}, code="minutes")
    lookup = {"pk": escalation_id}
    if workflow is not None:
        lookup["workflow"] = workflow
    escalation = (
        Escalation.objects.select_for_update(of=("self",))
        .select_related("work_item", "workflow")
        .get(**lookup)
    )
    if escalation.status != Escalation.Status.OPEN:
        raise DecisionRefused(ERR_ESCALATION_RESOLVED, code="already_resolved")
    resolution = EscalationResolution.objects.create(
        escalation=escalation,
        reviewer=reviewer,
        outcome=outcome,
        note=note.strip(),
        packet_rating=int(packet_rating),
        minutes_saved=int(minutes_saved),
        seconds_spent=max(0, min(int(seconds_spent), MAX_SECONDS_PER_DECISION * 4)),
    )
    escalation.status = Escalation.Status.RESOLVED
    escalation.save(update_fields=["status"])
    work_item = escalation.work_item
    if outcome == EscalationResolution.Outcome.SENT_BACK:
        work_item_retry(work_item=work_item)
    elif states.work_item_resolve(work_item.pk, succeeded=True):
        # The human finished the work: the item ended well, even if the agent did not.
        work_item.status, work_item.succeeded = WorkItem.Status.RESOLVED, True
    audit_append(
        action="escalation.resolved",
        actor=reviewer,
        workflow=escalation.workflow,
        obj=escalation,
        data={
            "outcome": outcome,
            "packet_rating": resolution.packet_rating,
            "minutes_saved": resolution.minutes_saved,
            "reason": escalation.reason,
        },
    )
    return resolution

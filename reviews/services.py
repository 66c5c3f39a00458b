"""What reviewers do: decide a proposal they hold a claim on (``reviews.claims``),
reject the rest of a plan, undo their last decision, and resolve escalations.

A decision names the card it was made on (the proposal and its arguments' hash, as
the card showed them); one made on a card that is no longer the one the reviewer
holds is refused. When the last action of a plan waiting for a human is judged, the
item's outcome (what the human did about the whole item) is written with it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from agents import queue, states
from agents.models import Escalation, Execution, Proposal, WorkItem
from agents.services import PlanDispatch, plan_dispatch, work_item_retry
from agents.tools.base import arguments_hash
from agents.tracing import decision_dispatch
from governance import privacy, sqlkit
from governance.audit import audit_append
from governance.breaker import critical_reason
from governance.models import AutonomyLevel, Workflow
from reviews import claims
from reviews import sql as reviews_sql
from reviews import tools as review_tools
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
from reviews.selectors import (
    GrantRead,
    QueueFilters,
    approvers_required,
    grant_read,
    is_sample,
    tool_and_level_read,
    tool_names,
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
ERR_CARD_REPLACED = (
    "The card on your screen was replaced: that decision was made on another card "
    "than the one you now hold. Nothing was saved. Read the card shown before deciding."
)
ERR_REST_NOT_OFFERED = (
    "“Reject the rest” applies once an action of a plan at supervised or above was "
    "rejected. Nothing was saved."
)
ERR_REST_HELD = (
    "Another reviewer holds action #{pk} ({tool}) of this plan. Nothing was rejected; "
    "decide this action on its own."
)
ERR_UNDO_GONE = "There is no such decision to undo (it was undone already)."
ERR_UNDO_NOT_YOURS = "You can undo only your own decisions."
ERR_UNDO_NOT_LATEST = "Only your most recent decision can be undone."
ERR_UNDO_KIND = (
    "Only a decision made in the review queue can be undone, not a post-hoc sample, "
    "a reported or an imported one."
)
ERR_UNDO_EXPIRED = (
    "Too late to undo: a decision can be taken back for {seconds} seconds after it "
    "is made. It stands."
)
ERR_UNDO_EXECUTED = "An action of this plan has started executing: the decision stands."
ERR_ACTION_WITHOUT_TAKING_IT = "Record the action you took only when you took the action yourself."
ERR_ACTION_TOOL = "“{tool}” is not a tool of this workflow."
ERR_ACTION_ARGUMENTS = "The arguments of an action are a JSON object."

# How long a reviewer may take back their own decision (while nothing of it ran).
# The database allows a few seconds more (reviews' migration 0004).
UNDO_WINDOW = timedelta(seconds=30)

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


def _lock_plan(
    *, proposal_id: int, workflow: Workflow | None
) -> tuple[Proposal, GrantRead, list[tuple[Any, ...]]]:
    """The proposal and its grant, with its whole plan locked (the rows, unbuilt)."""
    # Lock the whole plan, in sequence order, in one statement: the plan dispatch
    # that follows locks it too, and two reviewers deciding two actions of one plan
    # who each locked only their own first deadlocked there (found by the soak).
    rows = reviews_sql.plan_locked(
        proposal_id=proposal_id, workflow_id=workflow.pk if workflow is not None else None
    )
    row = next((r for r in rows if r[0] == proposal_id), None)
    if row is None:
        raise Proposal.DoesNotExist(f"Proposal {proposal_id} does not exist.")
    proposal = sqlkit.build(Proposal, row)
    if workflow is not None:
        proposal.workflow = workflow  # the caller's (access-checked) row: no second read
    return proposal, grant_read(row, sqlkit.width(Proposal)), rows


def _plan_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Proposal, GrantRead]]:
    width = sqlkit.width(Proposal)
    return [(sqlkit.build(Proposal, row), grant_read(row, width)) for row in rows]


def _lock_decidable(
    *, proposal_id: int, workflow: Workflow | None
) -> tuple[Proposal, bool, GrantRead, list[tuple[Any, ...]]]:
    """The proposal, locked, whether this is a post-hoc sample review, its grant, and
    its plan's rows (locked)."""
    proposal, grant, rows = _lock_plan(proposal_id=proposal_id, workflow=workflow)
    if is_sample(proposal) and not Decision.objects.filter(proposal=proposal).exists():
        return proposal, True, grant, rows
    if proposal.status != Proposal.Status.PENDING:
        raise DecisionRefused(
            ERR_ALREADY_DECIDED.format(status=proposal.get_status_display().lower()),
            code="already_decided",
        )
    if proposal.auto_executed:
        raise DecisionRefused(ERR_AUTO_IN_FLIGHT, code="auto_in_flight")
    return proposal, False, grant, rows


def _card_check(
    proposal: Proposal, *, shown_proposal_id: Any, shown_arguments_hash: str | None
) -> None:
    """The decision names the card it was made on: it must be this proposal, with the
    arguments it has now."""
    if shown_proposal_id is not None and str(shown_proposal_id) != str(proposal.pk):
        raise DecisionRefused(ERR_CARD_REPLACED, code="card_replaced")
    if shown_arguments_hash is not None and shown_arguments_hash != proposal.arguments_hash:
        raise DecisionRefused(ERR_CARD_REPLACED, code="card_replaced")


def _claim_take(
    *, proposal: Proposal, reviewer: AbstractBaseUser, claim_token: uuid.UUID | str
) -> Claim:
    """Take (release) the reviewer's claim on the proposal, or say why it is not theirs:
    a token for another card they hold means the card was replaced under them."""
    claim = claims.claim_take(
        proposal_id=proposal.pk, reviewer_id=reviewer.pk, claim_token=claim_token
    )
    if claim is not None:
        return claim
    if claims.claim_is_elsewhere(
        reviewer_id=reviewer.pk, claim_token=claim_token, proposal_id=proposal.pk
    ):
        raise DecisionRefused(ERR_CARD_REPLACED, code="card_replaced")
    raise DecisionRefused(ERR_CLAIM_LOST, code="claim_lost")


def _outcome_record(*, proposal: Proposal, dispatch: PlanDispatch, now: Any) -> None:
    """The last action of the plan that waited for a human was just judged: what the
    human did about the item is complete. Written once per item (a report or an
    escalation may have written it first)."""
    if dispatch.awaiting_human:
        return
    outcome = ItemOutcome(
        work_item_id=proposal.work_item_id,
        workflow_id=proposal.workflow_id,
        source=ItemOutcome.Source.CONSOLE,
        did_nothing=dispatch.all_rejected,
        occurred_at=now,
    )
    sqlkit.insert_new(outcome, conflict="work_item_id")


def _decision_write(
    *,
    proposal: Proposal,
    reviewer: AbstractBaseUser,
    sample: bool,
    verdict: str,
    final: dict[str, Any],
    diff: dict[str, list[Any]],
    reason: str,
    reason_text: str,
    level: str,
    seconds_spent: int,
    now: Any,
    audit: dict[str, Any] | None = None,
) -> Decision:
    """Write one decision, move its proposal, audit it (inside the caller's transaction)."""
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
        workflow=proposal.workflow,
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
            **(audit or {}),
        },
    )
    decision_dispatch(
        reviewer=reviewer,
        proposal=proposal,
        verdict=verdict,
        kind=decision.kind,
        seconds_spent=seconds_spent,
        decided_at=now,
        via=str((audit or {}).get("via", "")),
    )
    return decision


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
    shown_proposal_id: Any = None,
    shown_arguments_hash: str | None = None,
    via: str = "",
) -> Decision | Approval:
    """Record a reviewer's decision on a proposal they hold a claim on.

    Locks the proposal, checks the claim token (refused if the claim was lost or
    the proposal was already decided) and, when given, that the card the decision
    was made on (``shown_proposal_id``, ``shown_arguments_hash``) is this proposal
    as it is now (refused as ``card_replaced``), validates edited arguments against the
    tool's model, writes the Decision (one per proposal, enforced by the
    database), releases the claim, audits, and lets the plan dispatcher act.
    ``seconds_spent`` defaults to the time since the claim was taken, capped.

    ``via`` names where the decision was made when it was not the console (``slack``):
    the audit event says so; the decision is the same.

    An executed action sampled for post-hoc review gets a ``SAMPLE`` decision:
    nothing executes, and it feeds the circuit breaker's sampled agreement. An
    action above the workflow's two-approver threshold returns the first
    ``Approval`` and stays pending until a different reviewer approves it.
    """
    if verdict not in _STATUS_FOR_VERDICT:
        raise ValidationError(ERR_UNKNOWN_VERDICT.format(verdict=verdict), code="verdict")
    if shown_proposal_id is not None and str(shown_proposal_id) != str(proposal_id):
        raise DecisionRefused(ERR_CARD_REPLACED, code="card_replaced")
    proposal, sample, grant, _rows = _lock_decidable(proposal_id=proposal_id, workflow=workflow)
    _card_check(
        proposal, shown_proposal_id=shown_proposal_id, shown_arguments_hash=shown_arguments_hash
    )
    # Released here already: anything refused below rolls the transaction back.
    claim = _claim_take(proposal=proposal, reviewer=reviewer, claim_token=claim_token)

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
        # The reviewer edits values; the decision stores the subject's tokens.
        vault = privacy.vault_for(proposal.work_item.payload)
        if vault.tokens:
            proposed = review_tools.normalised(tool, vault.reveal(proposal.arguments))
        diff = review_tools.arguments_diff(proposed, final, tool)
        if not diff:
            raise ArgumentsInvalid({"__all__": [ERR_NOTHING_EDITED]})
        reason, reason_text = "", reason_text.strip()
        if vault.tokens:
            final = vault.protect_arguments(proposal.tool, final, privacy.policy_of(workflow))
            diff, reason_text = vault.protect(diff), vault.protect(reason_text)
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
                    via=via,
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
    decision = _decision_write(
        proposal=proposal,
        reviewer=reviewer,
        sample=sample,
        verdict=verdict,
        final=final,
        diff=diff,
        reason=reason,
        reason_text=reason_text,
        level=level,
        seconds_spent=seconds_spent,
        now=now,
        audit={
            **({"approvers": approvers} if approvers else {}),
            **({"via": via} if via else {}),
        }
        or None,
    )
    if not sample:
        dispatch = plan_dispatch(run_id=proposal.run_id)
        _outcome_record(proposal=proposal, dispatch=dispatch, now=now)
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
    shown_proposal_id: Any = None,
    shown_arguments_hash: str | None = None,
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
        shown_proposal_id=shown_proposal_id,
        shown_arguments_hash=shown_arguments_hash,
    )
    return decision, claims.claim_next(reviewer=reviewer, workflow=scope, filters=filters)


@transaction.atomic
def plan_reject_rest(
    *,
    proposal_id: int,
    reviewer: AbstractBaseUser,
    claim_token: uuid.UUID | str,
    reason: str,
    reason_text: str = "",
    workflow: Workflow | None = None,
    shown_proposal_id: Any = None,
    shown_arguments_hash: str | None = None,
) -> list[Decision]:
    """Reject, with one reason, every action of a plan still waiting for a human: the
    one on the reviewer's card and the rest. Offered once an action of a plan at
    supervised or above was rejected. Each action gets its own decision (and audit
    event), as if decided one by one; the plan is dispatched once, after the last.

    Refused, with nothing saved, if another reviewer holds one of those actions.
    """
    if not reason:
        raise ValidationError({"reason": [ERR_REASON_REQUIRED]}, code="reason")
    if reason not in RejectReason.values:
        raise ValidationError({"reason": [ERR_UNKNOWN_REASON.format(reason=reason)]}, code="reason")
    if shown_proposal_id is not None and str(shown_proposal_id) != str(proposal_id):
        raise DecisionRefused(ERR_CARD_REPLACED, code="card_replaced")
    proposal, sample, grant, rows = _lock_decidable(proposal_id=proposal_id, workflow=workflow)
    _card_check(
        proposal, shown_proposal_id=shown_proposal_id, shown_arguments_hash=shown_arguments_hash
    )
    claim = _claim_take(proposal=proposal, reviewer=reviewer, claim_token=claim_token)
    workflow = proposal.workflow
    _tool, level = tool_and_level_read(workflow=workflow, name=proposal.tool, grant=grant)
    plan = _plan_rows(rows)
    if (
        sample
        or AutonomyLevel.rank(level) < AutonomyLevel.rank(AutonomyLevel.SUPERVISED)
        or not any(p.status == Proposal.Status.REJECTED for p, _grant in plan)
    ):
        raise DecisionRefused(ERR_REST_NOT_OFFERED, code="rest_not_offered")
    rest = [
        (p, g)
        for p, g in plan
        if p.status == Proposal.Status.PENDING and not p.auto_executed and p.pk != proposal.pk
    ]
    held = claims.claims_held_by_others(
        proposal_ids=[p.pk for p, _g in rest], reviewer_id=reviewer.pk
    )
    if held:
        other = next(p for p, _g in rest if p.pk == held[0][0])
        raise DecisionRefused(ERR_REST_HELD.format(pk=other.pk, tool=other.tool), code="rest_held")
    claims.claims_release_decided(proposal_ids=[p.pk for p, _g in rest])
    now = timezone.now()
    # The time went into the card on screen; the rest were decided with it.
    seconds = max(0, min(int((now - claim.claimed_at).total_seconds()), MAX_SECONDS_PER_DECISION))
    decisions = []
    for p, g in [(proposal, grant), *rest]:
        p.workflow = workflow
        tool, p_level = tool_and_level_read(workflow=workflow, name=p.tool, grant=g)
        decisions.append(
            _decision_write(
                proposal=p,
                reviewer=reviewer,
                sample=False,
                verdict=Decision.Verdict.REJECT,
                final=review_tools.normalised(tool, p.arguments),
                diff={},
                reason=reason,
                reason_text=reason_text,
                level=p_level,
                seconds_spent=seconds if p is proposal else 0,
                now=now,
                audit={"rest_of_plan": True, "from_card": proposal.pk},
            )
        )
    _outcome_record(proposal=proposal, dispatch=plan_dispatch(run_id=proposal.run_id), now=now)
    seen: set[str] = set()
    for decision in decisions:
        tool_name = decision.proposal.tool
        if tool_name not in seen:
            seen.add(tool_name)
            _breaker_dispatch(
                decision=decision,
                workflow=workflow,
                tool=tool_name,
                level=decision.autonomy_level,
            )
    return decisions


def _undoable(decision: Decision, *, reviewer: AbstractBaseUser, now: Any) -> None:
    if decision.reviewer_id != reviewer.pk:
        raise DecisionRefused(ERR_UNDO_NOT_YOURS, code="undo_not_yours")
    if decision.kind != Decision.Kind.REVIEW:
        raise DecisionRefused(ERR_UNDO_KIND, code="undo_kind")
    if now - decision.created_at > UNDO_WINDOW:
        raise DecisionRefused(
            ERR_UNDO_EXPIRED.format(seconds=int(UNDO_WINDOW.total_seconds())),
            code="undo_expired",
        )
    latest = (
        Decision.objects.filter(reviewer=reviewer)
        .order_by("-created_at", "-pk")
        .values_list("pk", flat=True)
        .first()
    )
    if latest != decision.pk:
        raise DecisionRefused(ERR_UNDO_NOT_LATEST, code="undo_not_latest")


@transaction.atomic
def decision_undo(
    *, reviewer: AbstractBaseUser, decision_id: int, workflow: Workflow | None = None
) -> Claim | None:
    """Take back the reviewer's own most recent decision, within ``UNDO_WINDOW`` and
    while nothing of its plan has executed.

    The decision is copied whole into ``UndoneDecision`` and removed (with the
    reviewer's approval, for a two-approver action), so every metric follows; the
    proposal is pending again, its item awaiting review again without the outcome
    the console wrote for it, and the reviewer holds the card again (returned).
    Audited as ``proposal.undone``. An auto-allowed action held for a human after the
    undone rejection stays with a human: an undo never gives an action more autonomy.
    """
    proposal_id = Decision.objects.filter(pk=decision_id).values_list("proposal_id").first()
    if proposal_id is None:
        raise DecisionRefused(ERR_UNDO_GONE, code="undo_gone")
    proposal, _grant, _rows = _lock_plan(proposal_id=proposal_id[0], workflow=workflow)
    # Read again under the plan's lock: a second undo of the same decision waits for
    # the first and then finds nothing.
    decision = Decision.objects.filter(pk=decision_id).first()
    if decision is None:
        raise DecisionRefused(ERR_UNDO_GONE, code="undo_gone")
    now = timezone.now()
    _undoable(decision, reviewer=reviewer, now=now)
    if Execution.objects.filter(proposal__run_id=proposal.run_id).exists():
        raise DecisionRefused(ERR_UNDO_EXECUTED, code="undo_executed")
    if workflow is None:
        workflow = Workflow.objects.get(pk=proposal.workflow_id)
        proposal.workflow = workflow
    snapshot = {f.attname: getattr(decision, f.attname) for f in Decision._meta.concrete_fields}
    UndoneDecision.objects.create(
        decision_id=decision.pk,
        proposal_id=decision.proposal_id,
        reviewer=reviewer,
        verdict=decision.verdict,
        kind=decision.kind,
        decision=snapshot,
        decided_at=decision.created_at,
    )
    Approval.objects.filter(proposal_id=proposal.pk, reviewer=reviewer).delete()
    decision.delete()
    if not states.proposal_undo(proposal.pk):
        raise DecisionRefused(ERR_UNDO_EXECUTED, code="undo_executed")
    proposal.status, proposal.decided_at = Proposal.Status.PENDING, None
    states.work_item_reopen(proposal.work_item_id)
    ItemOutcome.objects.filter(
        work_item_id=proposal.work_item_id, source=ItemOutcome.Source.CONSOLE
    ).delete()
    claim = claims.claim_proposal(reviewer=reviewer, proposal=proposal)
    audit_append(
        action="proposal.undone",
        actor=reviewer,
        workflow=workflow,
        obj=proposal,
        data={
            "decision": decision_id,
            "tool": proposal.tool,
            "verdict": decision.verdict,
            "reason": decision.reason,
            "final_arguments_hash": decision.final_arguments_hash,
            "seconds_after": round((now - decision.created_at).total_seconds(), 1),
        },
    )
    return claim


def card_reveal_record(*, card: Any, reviewer: AbstractBaseUser) -> None:
    """A card showed a person's values decrypted to a reviewer: one audit event naming
    the proposal, the subjects and the arguments shown (never the values)."""
    personal_reveal_record(
        obj=card.proposal,
        workflow=card.proposal.workflow,
        subjects=card.revealed_subjects,
        shown=sorted(
            name
            for name, value in (card.proposal.arguments or {}).items()
            if privacy.subject_ids_in(value)
        ),
        reviewer=reviewer,
        key="arguments",
    )


def personal_reveal_record(
    *,
    obj: Any,
    workflow: Workflow,
    subjects: Any,
    shown: list[str],
    reviewer: AbstractBaseUser,
    key: str = "shown",
) -> None:
    """One audit event for a screen that showed people's values: what, whose (subject
    ids), to whom; never the values."""
    with transaction.atomic():
        audit_append(
            action="privacy.revealed",
            actor=reviewer,
            workflow=workflow,
            obj=obj,
            data={"subjects": list(subjects), key: shown},
        )


def undo_offer(decision: Decision | Approval | None) -> int | None:
    """The decision a success notice may offer to undo: a review decision (not a first
    approval, nor a sample)."""
    if isinstance(decision, Decision) and decision.kind == Decision.Kind.REVIEW:
        return decision.pk
    return None


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
    via: str = "",
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
            **({"via": via} if via else {}),
        },
    )
    decision_dispatch(
        reviewer=reviewer,
        proposal=proposal,
        verdict=verdict,
        kind="approval",
        seconds_spent=seconds_spent,
        decided_at=approval.created_at,
        via=via,
        approvals=1,
        needed=needed,
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
    actions: list[dict[str, Any]] | None = None,
) -> EscalationResolution:
    """Close an escalation: the reviewer took the action, closed it, or sent it back.

    Taking the action or closing it completes the human's account of the item: its
    outcome is written (unless one exists), with ``actions`` (each ``{"tool": ...,
    "arguments": {...}}``, checked against the tool's schema) as what the human did
    that the agent never proposed. Sent back, the agent tries again: no outcome yet.
    """
    if outcome not in EscalationResolution.Outcome.values:
        raise ValidationError(
            {"outcome": [ERR_UNKNOWN_OUTCOME.format(outcome=outcome)]}, code="outcome"
        )
    actions = list(actions or [])
    if actions and outcome != EscalationResolution.Outcome.TOOK_ACTION:
        raise ValidationError({"action_tool": [ERR_ACTION_WITHOUT_TAKING_IT]}, code="actions")
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
    actions = _actions_checked(escalation.workflow, actions)
    resolution = EscalationResolution.objects.create(
        escalation=escalation,
        reviewer=reviewer,
        outcome=outcome,
        action_taken={"actions": actions} if actions else {},
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
    else:
        if states.work_item_resolve(work_item.pk, succeeded=True):
            # The human finished the work: the item ended well, even if the agent did not.
            work_item.status, work_item.succeeded = WorkItem.Status.RESOLVED, True
        _escalation_outcome_record(
            escalation=escalation,
            did_nothing=outcome == EscalationResolution.Outcome.CLOSED,
            actions=actions,
        )
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
            **({"actions": actions} if actions else {}),
        },
    )
    return resolution


def _actions_checked(workflow: Workflow, actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each action the human took, its arguments validated against its tool's schema
    (as an edit's are) and normalised."""
    checked = []
    for action in actions:
        tool_name = str(action.get("tool") or "")
        arguments = action.get("arguments") or {}
        if tool_name not in tool_names([workflow.pk]):
            raise ValidationError(
                {"action_tool": [ERR_ACTION_TOOL.format(tool=tool_name)]}, code="actions"
            )
        if not isinstance(arguments, dict):
            raise ValidationError({"action_arguments": [ERR_ACTION_ARGUMENTS]}, code="actions")
        tool = review_tools.tool_for(workflow=workflow, name=tool_name)
        final, errors = review_tools.validate_arguments(tool, dict(arguments))
        if errors or final is None:
            raise ValidationError(
                {
                    "action_arguments": [
                        f"{name}: {message}" if name != "__all__" else message
                        for name, messages in errors.items()
                        for message in messages
                    ]
                },
                code="actions",
            )
        checked.append({"tool": tool_name, "arguments": final})
    return checked


def _escalation_outcome_record(
    *, escalation: Escalation, did_nothing: bool, actions: list[dict[str, Any]]
) -> None:
    """The human resolved the item themselves: its outcome, and each action they took
    as a missed one (the agent never proposed it). Never a second outcome."""
    now = timezone.now()
    outcome = ItemOutcome(
        work_item_id=escalation.work_item_id,
        workflow_id=escalation.workflow_id,
        source=ItemOutcome.Source.ESCALATION,
        did_nothing=did_nothing,
        occurred_at=now,
    )
    if not sqlkit.insert_new(outcome, conflict="work_item_id"):
        return
    HumanAction.objects.bulk_create(
        HumanAction(
            outcome=outcome,
            work_item_id=escalation.work_item_id,
            workflow_id=escalation.workflow_id,
            tool=action["tool"],
            arguments=action["arguments"],
            occurred_at=now,
        )
        for action in actions
    )


def escalation_unredacted_view(
    *, escalation: Escalation, viewer: AbstractBaseUser, workflow: Workflow
) -> None:
    """Record that someone saw an escalation's work item unredacted (who, which, when)."""
    with transaction.atomic():
        audit_append(
            action="escalation.unredacted_view",
            actor=viewer,
            workflow=workflow,
            obj=escalation,
            data={"work_item": escalation.work_item_id, "reason": escalation.reason},
        )

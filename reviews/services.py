"""What reviewers do: claim the next proposal, decide it, resolve escalations.

Two reviewers never hold the same proposal. On PostgreSQL the claim reads the
queue with ``FOR UPDATE SKIP LOCKED``, so concurrent reviewers step past each
other's rows instead of queueing behind them. On every database the claim row
itself is the lock: ``Claim.proposal`` is unique, and taking a claim is one
``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired`` statement, a
compare-and-set that succeeds for exactly one reviewer (SQLite ignores
``FOR UPDATE`` but serialises writers, and the upsert still decides).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from agents.models import Escalation, Proposal, Run, WorkItem
from agents.services import send_task
from agents.tools.base import arguments_hash
from governance import sqlkit as sql
from governance.audit import audit_append
from governance.breaker import critical_reason
from governance.models import AutonomyLevel, Workflow
from governance.permissions import REVIEW, workflows_for
from governance.tasks import breaker_check_task
from reviews import tools as review_tools
from reviews.models import Approval, Claim, Decision, EscalationResolution, RejectReason
from reviews.selectors import (
    GrantRead,
    QueueFilters,
    _as_datetime,
    approvers_required,
    claimable_q,
    grant_read,
    grant_sql,
    is_sample,
    queue_ranges,
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
# How many queue heads to try before giving up when every one is being taken at once.
CLAIM_ATTEMPTS = 5

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


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    renewed: bool  # the reviewer already held it


def _lease() -> timedelta:
    return timedelta(seconds=settings.TENURE_CLAIM_LEASE_SECONDS)


def _scope(*, reviewer: AbstractBaseUser, workflow: Workflow | None) -> list[int]:
    if workflow is not None:
        return [workflow.pk]
    return list(workflows_for(reviewer, REVIEW).order_by("pk").values_list("pk", flat=True))


def _claim_upsert(*, proposal_id: int, reviewer_id: int, now: datetime) -> Claim | None:
    """Insert a claim, or take over an expired one, in one statement. None if
    another reviewer holds a live claim on the proposal."""
    table = connection.ops.quote_name(Claim._meta.db_table)
    token = uuid.uuid4()
    token_db = Claim._meta.get_field("token").get_db_prep_value(token, connection)
    expires = now + _lease()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (proposal_id, reviewer_id, token, claimed_at, expires_at) "  # noqa: S608 - table name from the model
            "VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (proposal_id) DO UPDATE SET reviewer_id = excluded.reviewer_id, "
            "token = excluded.token, claimed_at = excluded.claimed_at, "
            f"expires_at = excluded.expires_at WHERE {table}.expires_at <= excluded.claimed_at "
            "RETURNING id",
            [proposal_id, reviewer_id, token_db, now, expires],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return Claim(
        pk=row[0],
        proposal_id=proposal_id,
        reviewer_id=reviewer_id,
        token=token,
        claimed_at=now,
        expires_at=expires,
    )


@cache
def _claim_next_sql(*, workflows: int, filters: str, skip: int, held: bool) -> str:
    """One statement for "what does this reviewer see next": the live claim they
    already hold in scope (``held``), else the head of each queue range of each
    workflow, locked with SKIP LOCKED, so concurrent reviewers step past each
    other's heads. A head is read only when nothing is held (an InitPlan that
    stops the scan, and takes no lock); each is one index range scan, so the cost
    does not grow with the queue.

    Built once per shape (workflows in scope, filters set, proposals to skip) and
    cached; every value is a parameter. Rows: the held claim's columns, then a
    head's (id, priority, created_at); the other side NULL.
    """
    proposal, claim = sql.table(Proposal), sql.table(Claim)
    approval = sql.table(Approval)
    pending, sample = queue_ranges()
    in_scope = ", ".join(["%s"] * workflows)
    ctes, selects = [], []
    claim_width = sql.width(Claim)
    if held:
        ctes.append(
            f"held AS (SELECT {sql.columns(Claim, 'c')} FROM {claim} c "  # noqa: S608 - names from the models
            f"JOIN {proposal} p ON p.id = c.proposal_id "
            f"WHERE c.reviewer_id = %s AND c.expires_at > %s AND p.workflow_id IN ({in_scope}) "
            f"AND (({pending}) OR ({sample})){filters} "
            "ORDER BY c.claimed_at LIMIT 1)"
        )
        selects.append("SELECT *, NULL, NULL, NULL FROM held")
    nulls = ", ".join(["NULL"] * claim_width)
    not_skipped = f" AND p.id NOT IN ({', '.join(['%s'] * skip)})" if skip else ""
    nothing_held = " AND NOT EXISTS (SELECT 1 FROM held)" if held else ""
    for n in range(workflows * 2):
        scope = pending if n % 2 == 0 else sample
        ctes.append(
            f"h{n} AS (SELECT p.id, p.priority, p.created_at FROM {proposal} p "  # noqa: S608 - names from the models
            f"WHERE p.workflow_id = %s AND {scope}{filters} "
            f"AND NOT EXISTS (SELECT 1 FROM {claim} c "
            "WHERE c.proposal_id = p.id AND c.expires_at > %s) "
            f"AND NOT EXISTS (SELECT 1 FROM {approval} a "
            f"WHERE a.proposal_id = p.id AND a.reviewer_id = %s){not_skipped}{nothing_held} "
            "ORDER BY p.priority DESC, p.created_at, p.id LIMIT 1"
            f"{sql.lock('FOR UPDATE OF p SKIP LOCKED')})"
        )
        selects.append(f"SELECT {nulls}, id, priority, created_at FROM h{n}")  # noqa: S608
    return f"WITH {', '.join(ctes)} {' UNION ALL '.join(selects)}"


def _claim_next_params(
    *,
    reviewer_id: int,
    workflow_ids: list[int],
    filters: QueueFilters,
    now: datetime,
    skip: list[int],
    held: bool,
) -> tuple[str, list[Any]]:
    filters_sql, filter_params = filters.as_sql("p")
    now_db = connection.ops.adapt_datetimefield_value(now)
    params: list[Any] = []
    if held:
        params += [reviewer_id, now_db, *workflow_ids, *filter_params]
    for workflow_id in workflow_ids:
        for _scope in ("pending", "sample"):
            params += [workflow_id, *filter_params, now_db, reviewer_id, *skip]
    statement = _claim_next_sql(
        workflows=len(workflow_ids), filters=filters_sql, skip=len(skip), held=held
    )
    return statement, params


def _held_or_heads(
    *,
    reviewer_id: int,
    workflow_ids: list[int],
    filters: QueueFilters,
    now: datetime,
    skip: list[int],
    held: bool,
) -> tuple[Claim | None, list[tuple[int, int, datetime]]]:
    """The reviewer's held claim (if ``held`` and they hold one), else the queue
    heads, highest priority first, then the oldest."""
    statement, params = _claim_next_params(
        reviewer_id=reviewer_id,
        workflow_ids=workflow_ids,
        filters=filters,
        now=now,
        skip=skip,
        held=held,
    )
    rows = sql.fetch(statement, params)
    width = sql.width(Claim)
    heads = []
    for row in rows:
        if row[0] is not None:
            return sql.build(Claim, row), []
        heads.append((row[width], row[width + 1], _as_datetime(row[width + 2])))
    # Across workflows: higher priority first, then the oldest.
    heads.sort(key=lambda head: (-head[1], head[2]))
    return None, heads


def claim_next(
    *,
    reviewer: AbstractBaseUser,
    workflow: Workflow | None = None,
    filters: QueueFilters | None = None,
) -> Claim | None:
    """Claim the next proposal for ``reviewer`` in one workflow (or all theirs).

    A live claim the reviewer already holds in that scope comes back first (with
    its lease renewed); then the highest-priority, oldest unclaimed proposal.
    Expired claims are taken over. Returns None when the queue is empty.

    One statement reads the held claim or, when there is none, locks the queue
    heads (SKIP LOCKED); a second takes the claim. Serving the claim already held
    (every page view) writes nothing unless its lease is half gone.
    """
    filters = filters or QueueFilters()
    now = timezone.now()
    workflow_ids = _scope(reviewer=reviewer, workflow=workflow)
    if not workflow_ids:
        return None
    # No savepoint when the caller's transaction is open (decide-and-next): nothing
    # here is caught and retried, so an error rolls the whole request back anyway.
    with transaction.atomic(savepoint=False):
        held, heads = _held_or_heads(
            reviewer_id=reviewer.pk,
            workflow_ids=workflow_ids,
            filters=filters,
            now=now,
            skip=[],
            held=True,
        )
        if held is not None:
            return claim_renew(claim=held, now=now)
        return _claim_queue_head(
            reviewer=reviewer, workflow_ids=workflow_ids, filters=filters, now=now, heads=heads
        )


def _claim_queue_head(
    *,
    reviewer: AbstractBaseUser,
    workflow_ids: list[int],
    filters: QueueFilters,
    now: datetime,
    heads: list[tuple[int, int, datetime]],
) -> Claim | None:
    tried: list[int] = []
    for attempt in range(CLAIM_ATTEMPTS):
        if attempt:
            _held, heads = _held_or_heads(
                reviewer_id=reviewer.pk,
                workflow_ids=workflow_ids,
                filters=filters,
                now=now,
                skip=tried,
                held=False,
            )
        if not heads:
            return None
        for proposal_id, _priority, _created in heads:
            tried.append(proposal_id)
            claim = _claim_upsert(proposal_id=proposal_id, reviewer_id=reviewer.pk, now=now)
            if claim is not None:
                return claim
    return None


@transaction.atomic
def claim_proposal(*, reviewer: AbstractBaseUser, proposal: Proposal) -> Claim | None:
    """Claim one chosen proposal (opened from the list). Returns the reviewer's
    claim, or None when it is decided or another reviewer holds it."""
    now = timezone.now()
    if not Proposal.objects.filter(claimable_q(), pk=proposal.pk).exists():
        return None
    held = Claim.objects.filter(proposal=proposal, reviewer=reviewer, expires_at__gt=now).first()
    if held is not None:
        return claim_renew(claim=held, now=now)
    claim = _claim_upsert(proposal_id=proposal.pk, reviewer_id=reviewer.pk, now=now)
    if claim is not None:
        # One card at a time: opening another item gives back the others.
        Claim.objects.filter(reviewer=reviewer).exclude(pk=claim.pk).delete()
    return claim


def claim_renew(*, claim: Claim, now: datetime | None = None) -> Claim:
    """Extend a live lease (the reviewer is looking at the card). Keeps claimed_at,
    which is when the time spent on the decision starts."""
    now = now or timezone.now()
    if claim.expires_at - now > _lease() / 2:
        return claim  # plenty of lease left: no write (and no commit) on every page view
    claim.expires_at = now + _lease()
    Claim.objects.filter(pk=claim.pk, token=claim.token).update(expires_at=claim.expires_at)
    return claim


@transaction.atomic
def claim_release(*, reviewer: AbstractBaseUser, claim_token: uuid.UUID | str) -> int:
    """Give a proposal back to the queue (skip). Returns how many claims were released."""
    deleted, _ = Claim.objects.filter(reviewer=reviewer, token=claim_token).delete()
    return deleted


def _plan_dispatch_ready(run_id: int) -> None:
    try:
        from agents.services import plan_dispatch_ready
    except ImportError:  # the agent runtime's plan dispatcher is not installed yet
        return
    plan_dispatch_ready(run_id=run_id)


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
    transaction.on_commit(lambda: send_task(breaker_check_task, workflow_id, tool, critical))


@cache
def _lock_plan_sql(*, in_workflow: bool) -> str:
    """The plan of a proposal, each row with its tool's grant, locked in sequence order."""
    proposal = sql.table(Proposal)
    grant_columns, grant_join = grant_sql()
    in_scope = " AND q.workflow_id = %s" if in_workflow else ""
    return (
        f"SELECT {sql.columns(Proposal, 'p')}, {grant_columns} FROM {proposal} p {grant_join} "  # noqa: S608 - names from the models
        f"WHERE p.run_id = (SELECT q.run_id FROM {proposal} q WHERE q.id = %s{in_scope}) "
        f"ORDER BY p.sequence{sql.lock('FOR UPDATE OF p')}"
    )


def _lock_decidable(
    *, proposal_id: int, workflow: Workflow | None
) -> tuple[Proposal, bool, GrantRead]:
    """The proposal, locked, whether this is a post-hoc sample review, and its grant."""
    params: list[Any] = [proposal_id]
    if workflow is not None:
        params.append(workflow.pk)
    # Lock the whole plan, in sequence order, in one statement: the plan dispatch
    # that follows locks it too, and two reviewers deciding two actions of one plan
    # who each locked only their own first deadlocked there (found by the soak).
    rows = sql.fetch(_lock_plan_sql(in_workflow=workflow is not None), params)
    width = sql.width(Proposal)
    row = next((r for r in rows if r[0] == proposal_id), None)
    if row is None:
        raise Proposal.DoesNotExist(f"Proposal {proposal_id} does not exist.")
    proposal = sql.build(Proposal, row)
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


@cache
def _take_claim_sql() -> str:
    claim = sql.table(Claim)
    return (
        f"DELETE FROM {claim} WHERE proposal_id = %s AND reviewer_id = %s AND token = %s "  # noqa: S608 - names from the model
        f"RETURNING {sql.columns(Claim, Claim._meta.db_table)}"
    )


def _claim_take(
    *, proposal_id: int, reviewer_id: int, claim_token: uuid.UUID | str
) -> Claim | None:
    """Check and release the reviewer's claim in one statement: delete it if it is
    theirs with this token, and return it (None: the claim was lost). Called inside
    the decision's transaction, so a refused decision puts it back (rollback)."""
    try:
        token = uuid.UUID(str(claim_token))
    except ValueError:
        return None
    token_db = Claim._meta.get_field("token").get_db_prep_value(token, connection)
    rows = sql.fetch(_take_claim_sql(), [proposal_id, reviewer_id, token_db])
    return sql.build(Claim, rows[0]) if rows else None


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
    claim = _claim_take(proposal_id=proposal.pk, reviewer_id=reviewer.pk, claim_token=claim_token)
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
    sql.insert([decision])
    if not sample:
        proposal.status = _STATUS_FOR_VERDICT[verdict]
    proposal.decided_at = now
    sql.update(Proposal, proposal.pk, {"status": proposal.status, "decided_at": now})
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
        _plan_dispatch_ready(proposal.run_id)
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
    return decision, claim_next(reviewer=reviewer, workflow=scope, filters=filters)


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


def _send_back(work_item: WorkItem) -> None:
    """Give the item back to the agent: a fresh attempt, dispatched after commit."""
    try:
        from agents.services import work_item_retry
    except ImportError:  # until agents offers a retry service: queue a new attempt here
        from agents.services import work_item_dispatch

        last = work_item.runs.order_by("-attempt").values_list("attempt", flat=True).first()
        Run.objects.create(
            work_item=work_item,
            attempt=(last or 0) + 1,
            status=Run.Status.QUEUED,
            autonomy_level=work_item.workflow.autonomy_level,
        )
        work_item.status = WorkItem.Status.RECEIVED
        work_item.save(update_fields=["status", "updated_at"])
        work_item_dispatch(work_item=work_item)
        return
    work_item_retry(work_item_id=work_item.pk)


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
    now = timezone.now()
    if outcome == EscalationResolution.Outcome.SENT_BACK:
        _send_back(work_item)
    elif work_item.status not in WorkItem.TERMINAL:
        work_item.status = WorkItem.Status.RESOLVED
        # The human finished the work: the item ended well, even if the agent did not.
        work_item.succeeded = True
        work_item.resolved_at = now
        work_item.save(update_fields=["status", "succeeded", "resolved_at", "updated_at"])
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

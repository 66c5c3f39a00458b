"""Agent-side writes: work items in, plans dispatched, actions executed exactly once."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from pydantic import ValidationError as PydanticValidationError

from agents import sql as agents_sql
from agents import states
from agents.models import Escalation, Execution, Proposal, Run, WorkItem
from agents.notifications import notify_escalation
from agents.policy import grant_level, policy_evaluate
from agents.runner import principal_for
from agents.tools import ToolContext, ToolError, TransientToolError, arguments_hash, registry_for
from governance import sql as governance_sql
from governance.audit import audit_append
from governance.models import AutonomyLevel, ToolGrant, Workflow

logger = logging.getLogger(__name__)

ERR_PAYLOAD_NOT_OBJECT = "The payload must be a JSON object, not {kind}."
ERR_PAYLOAD_TEXT = "The payload's “text” must be a string."
ERR_PAYLOAD_TOO_BIG = "The payload is too large ({size} bytes; the limit is {limit})."
ERR_PAYLOAD_NOT_JSON = "The payload must be JSON-serialisable: {error}"
ERR_EXTERNAL_ID = "The external id must be 1 to 200 characters."
ERR_SOURCE = "“{source}” is not a work-item source."
ERR_NOT_APPROVED = "Proposal {id} is not approved (it is {status}); nothing executes."
ERR_LEVEL_TOO_LOW = "{tool} is at {level}: actions execute only at supervised or above."
ERR_NOT_AUTO = "{tool} is not auto-allowed at {level}; it needs an approval first."
ERR_HASH_MISMATCH = "The arguments to execute do not match the approved ones; refusing."
ERR_TOOL_GONE = "{tool} is no longer granted to this workflow; refusing."
ERR_POLICY_DENIES = "Policy now denies this action: {rule}"
ERR_INVALID_FINAL = "The approved arguments are invalid for {tool}: {error}"
ERR_PAUSED_EXECUTION = "The workflow is paused; the execution did not start."
RULE_DAILY_COUNT_HELD = (
    "{tool} already ran {done} times without a human today (daily cap {cap}); a human approves."
)
RULE_DAILY_TOTAL_HELD = (
    "{tool} would bring today's automatic total to {total} (daily cap {cap}); a human approves."
)
RULE_NO_LONGER_AUTO = "Policy no longer allows {tool} to run without a human: {rule}"
MAX_PAYLOAD_BYTES = 64 * 1024
# Test-only: seconds to sleep after a side effect, before it is recorded (so a test can
# SIGKILL the worker in the worst place). Inert unless the variable is set.
TEST_DELAY_ENV = "TENURE_TEST_EXECUTION_DELAY"

EXECUTABLE_STATUSES = (Proposal.Status.ACCEPTED, Proposal.Status.EDITED)


def _validate_payload(payload: Any) -> None:
    if not isinstance(payload, dict):
        raise ValidationError(
            ERR_PAYLOAD_NOT_OBJECT.format(kind=type(payload).__name__), code="payload_not_object"
        )
    if "text" in payload and not isinstance(payload["text"], str):
        raise ValidationError(ERR_PAYLOAD_TEXT, code="payload_text")
    try:
        size = len(json.dumps(payload).encode())
    except (TypeError, ValueError) as exc:
        raise ValidationError(ERR_PAYLOAD_NOT_JSON.format(error=exc), code="payload_json") from exc
    if size > MAX_PAYLOAD_BYTES:
        raise ValidationError(
            ERR_PAYLOAD_TOO_BIG.format(size=size, limit=MAX_PAYLOAD_BYTES), code="payload_size"
        )


def send_task(task: Any, *args: Any) -> bool:
    """Send a task after commit without failing the request that committed the work.

    When the broker is unreachable the work is already saved; it stays in a state
    the sweeper (``agents.redispatch_stranded``, every minute) and client retries
    pick up, so a broker outage delays work and never loses it.
    """
    try:
        task.delay(*args)
    except Exception:  # noqa: BLE001 - any broker error: the sweeper re-sends it
        logger.warning(
            "broker unavailable: %s%s not sent; the sweeper will resend it",
            getattr(task, "name", task),
            args,
        )
        return False
    return True


def work_item_dispatch(*, work_item: WorkItem) -> None:
    """Send the item to a worker once the current transaction commits."""
    from agents.tasks import run_agent

    item_id = work_item.pk
    transaction.on_commit(lambda: send_task(run_agent, item_id))


def work_item_create(
    *,
    workflow: Workflow,
    external_id: str,
    payload: Any,
    source: str,
    title: str = "",
    principal: str = "",
) -> tuple[WorkItem, bool]:
    """Create a work item, idempotent on (workflow, external id). A duplicate returns
    the original with created=False. A new item is dispatched to run_agent on commit."""
    external_id = (external_id or "").strip()
    if not external_id or len(external_id) > 200:
        raise ValidationError(ERR_EXTERNAL_ID, code="external_id")
    if source not in WorkItem.Source.values:
        raise ValidationError(ERR_SOURCE.format(source=source), code="source")
    _validate_payload(payload)
    title = (title or str(payload.get("title", "")))[:300]
    try:
        with transaction.atomic():
            item = _insert_new(
                workflow=workflow,
                rows=[(external_id, title, payload)],
                source=source,
                principal=principal,
            ).get(external_id)
            if item is None:
                # A retry (or a concurrent request that got there first) returns the
                # original. An item whose task never reached the broker is re-sent by
                # the stranded-work sweeper (``stranded_redispatch``).
                return WorkItem.objects.get(workflow=workflow, external_id=external_id), False
            audit_append(
                action="work_item.received",
                actor=principal or f"integration:{source}",
                workflow=workflow,
                obj=item,
                data={"external_id": external_id, "source": source},
            )
            if workflow.autonomy_level != AutonomyLevel.OFF:
                work_item_dispatch(work_item=item)
    except IntegrityError:
        # Only on the ORM fallback of ``_insert_new``: a concurrent request won.
        return WorkItem.objects.get(workflow=workflow, external_id=external_id), False
    return item, True


def work_item_retry(*, work_item: WorkItem) -> Run:
    """Give an escalated item back to the agent (a human sent it back): a fresh
    attempt, queued, and dispatched once the transaction commits."""
    last = work_item.runs.order_by("-attempt").values_list("attempt", flat=True).first()
    run = Run.objects.create(
        work_item=work_item,
        attempt=(last or 0) + 1,
        status=Run.Status.QUEUED,
        autonomy_level=work_item.workflow.autonomy_level,
    )
    states.work_item_move(work_item.pk, to=WorkItem.Status.RECEIVED)
    work_item.status = WorkItem.Status.RECEIVED
    work_item_dispatch(work_item=work_item)
    return run


def work_items_dispatch_received(*, workflow: Workflow) -> list[int]:
    """Dispatch items still waiting for their first run (e.g. after a resume)."""
    ids = list(
        WorkItem.objects.filter(workflow=workflow, status=WorkItem.Status.RECEIVED).values_list(
            "pk", flat=True
        )
    )
    if ids:
        # A resumed backlog goes out like a batch: one fan-out message per 1000 items.
        transaction.on_commit(lambda: _dispatch_many(ids))
    return ids


# --- Plans -----------------------------------------------------------------------


def _level_of(proposal: Proposal, grants: dict[str, ToolGrant]) -> str:
    return grant_level(proposal.workflow, grants.get(proposal.tool))


def _executable(level: str) -> bool:
    return AutonomyLevel.rank(level) >= AutonomyLevel.rank(AutonomyLevel.SUPERVISED)


def _approved_to_run(proposal: Proposal) -> bool:
    """A human's accept is an approval to execute only when it was given at
    supervised or above. In shadow mode it records what the human did in their own
    system: executing it later (after a promotion, or a resume) would do it twice."""
    decision = _decision(proposal)
    if decision is None:
        return False
    return _executable(decision.autonomy_level or AutonomyLevel.SHADOW)


def _next_to_execute(proposals: list[Proposal], grants: dict[str, ToolGrant]) -> Proposal | None:
    """The first proposal in sequence still to execute, or None when nothing is left
    (or the next one waits for a human)."""
    for proposal in proposals:
        if proposal.status == Proposal.Status.EXECUTED:
            continue
        if proposal.status in EXECUTABLE_STATUSES:
            if _executable(_level_of(proposal, grants)) and _approved_to_run(proposal):
                return proposal
            continue  # recorded at shadow (what the human did), never run
        if proposal.status == Proposal.Status.PENDING and proposal.auto_executed:
            return proposal
        return None
    return None


def _plan_grants(workflow: Workflow, proposals: list[Proposal]) -> dict[str, ToolGrant]:
    """The grants ``_next_to_execute`` consults: only approved actions are judged by
    their tool's level, so a plan with none left (the usual end) costs no query; nor
    does one whose proposals came from ``_plan`` (with their grants)."""
    executable = [p for p in proposals if p.status in EXECUTABLE_STATUSES]
    if not executable:
        return {}
    if all(hasattr(p, "grant_level") for p in executable):
        return {
            p.tool: ToolGrant(
                workflow=workflow,
                tool=p.tool,
                autonomy_level=p.grant_level,
                enabled=bool(p.grant_enabled),
            )
            for p in executable
            if p.grant_level is not None  # no grant: the tool is off
        }
    # order_by(): ToolGrant's default ordering joins the workflow for nothing here.
    return {g.tool: g for g in ToolGrant.objects.filter(workflow=workflow).order_by()}


def _enqueue_execute(proposal_id: int) -> None:
    from agents.tasks import execute_action

    transaction.on_commit(lambda: send_task(execute_action, proposal_id))


def plan_dispatch_ready(*, run_id: int) -> list[int]:
    """Called by reviews after every decision, inside its transaction.

    A rejection cancels the rest of the plan. When every proposal is accepted or
    edited, at supervised or above the first one is enqueued (each success enqueues
    the next); in shadow mode the outcome is recorded and nothing executes.
    """
    # savepoint=False: every caller lets an error propagate (the whole transaction
    # rolls back), so a savepoint would cost two round trips and buy nothing.
    with transaction.atomic(savepoint=False):
        # Only the proposals' rows are locked: locking the workflow's would block every
        # concurrent insert that references it (deferred FK checks) and deadlock.
        proposals = agents_sql.plan(run_id, locked=True)
        if not proposals:
            return []
        # The work item is written with conditional UPDATEs (agents.states), which
        # lock it after the proposals, as before, and re-check its state under the lock.
        item_id = proposals[0].work_item_id
        rejected = [p for p in proposals if p.status == Proposal.Status.REJECTED]
        if rejected:
            first = rejected[0].sequence
            cancel = [
                p
                for p in proposals
                if p.sequence > first
                and p.status in (Proposal.Status.PENDING, *EXECUTABLE_STATUSES)
            ]
            if cancel:
                states.proposals_move([p.pk for p in cancel], to=Proposal.Status.CANCELLED)
                for p in cancel:
                    p.status = Proposal.Status.CANCELLED
            undecided = any(p.status == Proposal.Status.PENDING for p in proposals)
            if not undecided:
                states.work_item_resolve(item_id, succeeded=False)
            return []
        # Every action approved, done, or on its way to run on its own.
        if not all(
            p.status in (*EXECUTABLE_STATUSES, Proposal.Status.EXECUTED)
            or (p.status == Proposal.Status.PENDING and p.auto_executed)
            for p in proposals
        ):
            return []
        nxt = _next_to_execute(proposals, _plan_grants(proposals[0].workflow, proposals))
        if nxt is None:
            # Nothing to execute (shadow mode, or all done): record the outcome.
            states.work_item_resolve(item_id, succeeded=True)
            return []
        states.work_item_move(item_id, to=WorkItem.Status.EXECUTING)
        _enqueue_execute(nxt.pk)
        return [nxt.pk]


def resume_dispatch(*, workflow_id: int) -> None:
    """A resume hook (governance.hooks "on_resume"), run once the resume has
    committed: a worker restarts the held work. If the broker is down, the sweeper
    re-sends approved plans, automatic actions and received items itself."""
    from agents.tasks import resume_held_work

    send_task(resume_held_work, workflow_id)


def held_work_restart(*, workflow_id: int) -> int:
    """Restart what a pause held back: plans whose approved (or automatic) actions
    waited, and items that arrived meanwhile. Returns how many were sent. A pause
    that came back since then holds them again (each execution re-checks it)."""
    workflow = Workflow.objects.filter(pk=workflow_id).first()
    if workflow is None or workflow.paused:
        return 0
    with transaction.atomic():
        enqueued = plans_redispatch(workflow=workflow)
    with transaction.atomic():
        received = work_items_dispatch_received(workflow=workflow)
    return len(enqueued) + len(received)


def plans_redispatch(*, workflow: Workflow) -> list[int]:
    """After a resume: restart the plans whose approved actions the pause held back.
    Returns the proposal ids enqueued (on commit)."""
    # Only plans still open: a resolved item (every shadow-mode item) has nothing held.
    open_items = (WorkItem.Status.AWAITING_REVIEW, WorkItem.Status.EXECUTING)
    run_ids = (
        Proposal.objects.filter(
            workflow=workflow,
            status__in=EXECUTABLE_STATUSES,
            work_item__status__in=open_items,
        )
        .values_list("run_id", flat=True)
        .distinct()
    )
    enqueued: list[int] = []
    for run_id in sorted(set(run_ids)):
        enqueued += plan_dispatch_ready(run_id=run_id)
    # Auto-allowed plans the pause held: start their next action again.
    auto_runs = (
        Proposal.objects.filter(
            workflow=workflow, status=Proposal.Status.PENDING, auto_executed=True
        )
        .values_list("run_id", flat=True)
        .distinct()
    )
    grants = {g.tool: g for g in ToolGrant.objects.filter(workflow=workflow).order_by()}
    for run_id in sorted(set(auto_runs)):
        proposals = list(
            Proposal.objects.select_related("workflow", "decision")
            .filter(run_id=run_id)
            .order_by("sequence")
        )
        nxt = _next_to_execute(proposals, grants)
        if nxt is not None and nxt.pk not in enqueued:
            _enqueue_execute(nxt.pk)
            enqueued.append(nxt.pk)
    return enqueued


def proposals_auto_execute(
    *, proposals: list[Proposal], plan: list[Proposal] | None = None
) -> list[int]:
    """Auto-allowed actions at limited/autonomous: mark them, and start the plan's
    first action if it is one of them. An auto-allowed action after one that waits
    for a human starts once that one is approved (and is cancelled if rejected).

    Whether an action is sampled for post-hoc review is decided when it executes
    (``_auto_reserve``), under the grant's lock, so the sample is exact.
    """
    if not proposals:
        return []
    Proposal.objects.filter(pk__in=[p.pk for p in proposals]).update(
        auto_executed=True, sampled_for_review=False
    )
    for p in proposals:
        p.auto_executed = True
        p.sampled_for_review = False
    nxt = _next_to_execute(sorted(plan or proposals, key=lambda p: p.sequence), {})
    if nxt is None:
        return []
    _enqueue_execute(nxt.pk)
    return [nxt.pk]


def _plan_settled(item_id: int, proposals: list[Proposal]) -> None:
    """After an action ran and nothing follows it now: resolve the item, or hand it
    back to the reviewers while a later action waits for one (inside a transaction).
    A terminal item is left alone (the conditional UPDATE re-checks under the lock)."""
    if all(p.status in (Proposal.Status.EXECUTED, *EXECUTABLE_STATUSES) for p in proposals):
        states.work_item_resolve(item_id, succeeded=True)
    elif any(p.status == Proposal.Status.REJECTED for p in proposals) and not any(
        p.status == Proposal.Status.PENDING for p in proposals
    ):
        states.work_item_resolve(item_id, succeeded=False)
    elif any(p.status == Proposal.Status.PENDING and not p.auto_executed for p in proposals):
        states.work_item_move(item_id, to=WorkItem.Status.AWAITING_REVIEW)


# --- Execution ---------------------------------------------------------------------


class ExecutionRefused(Exception):  # a refusal, with a message to show
    pass


def _legacy_hash(arguments: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(arguments, sort_keys=True).encode()).hexdigest()


def _decision(proposal: Proposal) -> Any:
    try:
        return proposal.decision  # reviews.Decision, by its reverse relation
    except (ObjectDoesNotExist, AttributeError):
        return None


def _approved(proposal: Proposal) -> tuple[dict[str, Any], str, bool]:
    """(arguments to execute, the approved hash, executed without a human?)."""
    decision = _decision(proposal)
    if proposal.status in EXECUTABLE_STATUSES and decision is not None:
        if decision.verdict not in ("accept", "edit"):
            raise ExecutionRefused(ERR_NOT_APPROVED.format(id=proposal.pk, status=decision.verdict))
        final = decision.final_arguments or proposal.arguments
        approved = decision.final_arguments_hash or proposal.arguments_hash
        if decision.verdict == "accept" and not decision.final_arguments:
            approved = proposal.arguments_hash
        if approved not in (arguments_hash(final), _legacy_hash(final)):
            raise ExecutionRefused(ERR_HASH_MISMATCH)
        return final, arguments_hash(final), False
    if (
        proposal.status == Proposal.Status.PENDING
        and proposal.auto_executed
        and proposal.verdict == Proposal.Verdict.ALLOW
    ):
        if proposal.arguments_hash not in (
            arguments_hash(proposal.arguments),
            _legacy_hash(proposal.arguments),
        ):
            raise ExecutionRefused(ERR_HASH_MISMATCH)
        return proposal.arguments, arguments_hash(proposal.arguments), True
    raise ExecutionRefused(
        ERR_NOT_APPROVED.format(id=proposal.pk, status=proposal.get_status_display().lower())
    )


def execution_key(proposal: Proposal, approved_hash: str) -> str:
    return f"proposal-{proposal.pk}-{approved_hash[:16]}"


def _fail(proposal: Proposal, execution: Execution | None, error: str) -> None:
    """A permanent failure: the action did not (and will not) happen. Escalate."""
    with transaction.atomic():
        proposal = (
            Proposal.objects.select_for_update().select_related("work_item").get(pk=proposal.pk)
        )
        if execution is not None:
            execution.status = Execution.Status.FAILED
            execution.error = error[:5000]
            execution.finished_at = timezone.now()
            states.execution_move(
                execution.pk,
                to=Execution.Status.FAILED,
                error=execution.error,
                finished_at=execution.finished_at,
            )
        proposal.status = Proposal.Status.EXECUTION_FAILED
        states.proposal_move(proposal.pk, to=Proposal.Status.EXECUTION_FAILED)
        states.plan_rest_cancel(run_id=proposal.run_id, after=proposal.sequence)
        item = WorkItem.objects.get(pk=proposal.work_item_id)
        states.work_item_move(item.pk, to=WorkItem.Status.ESCALATED)
        item.status = WorkItem.Status.ESCALATED
        escalation = Escalation.objects.create(
            workflow_id=proposal.workflow_id,
            work_item=item,
            run_id=proposal.run_id,
            reason=Escalation.Reason.EXECUTION_FAILED,
            detail=error[:5000],
            packet={
                "work_item": {"id": item.pk, "external_id": item.external_id},
                "proposal": {
                    "id": proposal.pk,
                    "tool": proposal.tool,
                    "sequence": proposal.sequence,
                },
                "error": error,
                "idempotency_key": execution.idempotency_key if execution else "",
            },
        )
        notify_escalation(escalation)
        audit_append(
            action="agent.tool.failed",
            actor=principal_for(proposal.workflow),
            workflow=proposal.workflow,
            obj=proposal,
            data={"tool": proposal.tool, "error": error[:500]},
        )


def _test_delay() -> None:
    delay = os.environ.get(TEST_DELAY_ENV)
    if delay:
        time.sleep(float(delay))


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except (InvalidOperation, ValueError):
        return None


def auto_daily_usage(
    *, workflow: Workflow, tool: str, exclude_key: str = ""
) -> tuple[int, Decimal]:
    """What ran, or is running, without a human today (UTC) for one tool: (count, total).

    A running execution counts: it is a reservation taken under the grant's lock,
    so two workers can never both take the last unit of a daily cap.
    """
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    rows = (
        Execution.objects.filter(proposal__workflow=workflow, proposal__tool=tool, auto=True)
        .filter(
            Q(status=Execution.Status.SUCCEEDED, finished_at__gte=today)
            | Q(status=Execution.Status.RUNNING, started_at__gte=today)
        )
        .exclude(idempotency_key=exclude_key)
        .values_list("arguments", flat=True)
    )
    amounts = [_decimal(a.get("amount")) if isinstance(a, dict) else None for a in rows]
    return len(amounts), sum((a for a in amounts if a is not None), Decimal(0))


def _auto_reserve(*, proposal: Proposal, grant: ToolGrant, facts: dict[str, Any], key: str) -> str:
    """Under the grant's row lock: may this auto-allowed action run now? Returns the
    rule that holds it for a human, or "" and decides whether it is sampled.

    The sample is systematic: the n-th automatic execution of a tool is sampled when
    floor(n x rate) steps up, so N executions yield exactly floor(N x rate) samples.
    """
    workflow = proposal.workflow
    caps = grant.caps if isinstance(grant.caps, dict) else {}
    count_cap, total_cap = _decimal(caps.get("count")), _decimal(caps.get("total"))
    done, total = auto_daily_usage(workflow=workflow, tool=proposal.tool, exclude_key=key)
    if count_cap is not None and done + 1 > count_cap:
        return RULE_DAILY_COUNT_HELD.format(tool=proposal.tool, done=done, cap=count_cap)
    amount = _decimal(facts.get("amount"))
    if total_cap is not None and amount is not None and total + amount > total_cap:
        return RULE_DAILY_TOTAL_HELD.format(tool=proposal.tool, total=total + amount, cap=total_cap)
    ordinal = (
        Execution.objects.filter(
            proposal__workflow=workflow, proposal__tool=proposal.tool, auto=True
        ).count()
        + 1
    )
    rate = Decimal(workflow.sample_rate)
    proposal.sampled_for_review = int(ordinal * rate) > int((ordinal - 1) * rate)
    proposal.save(update_fields=["sampled_for_review"])
    return ""


def _hold_for_approval(proposal: Proposal, rule: str) -> None:
    """An auto-allowed action that may no longer run without a human goes to the
    approval queue, with the rest of its plan (inside the caller's transaction)."""
    Proposal.objects.filter(
        run_id=proposal.run_id, status=Proposal.Status.PENDING, auto_executed=True
    ).update(auto_executed=False, sampled_for_review=False)
    proposal.auto_executed = False
    proposal.sampled_for_review = False
    proposal.verdict = Proposal.Verdict.NEEDS_APPROVAL
    proposal.verdict_rule = rule
    proposal.save(update_fields=["auto_executed", "sampled_for_review", "verdict", "verdict_rule"])
    states.work_item_move(proposal.work_item_id, to=WorkItem.Status.AWAITING_REVIEW)
    audit_append(
        action="agent.tool.held_for_approval",
        actor=principal_for(proposal.workflow),
        workflow=proposal.workflow,
        obj=proposal,
        data={"tool": proposal.tool, "rule": rule},
    )


def proposal_execute(*, proposal_id: int) -> Execution | None:
    """Execute one approved (or auto-allowed) proposal exactly once.

    The idempotency key comes from the proposal and its approved arguments; the
    Execution row holds it under a unique constraint and the handler honours it,
    so redelivery, a killed worker or a double click never repeats the side effect.
    """
    with transaction.atomic():
        proposal = agents_sql.proposal_to_execute(proposal_id)
        if proposal is None:
            return None
        if proposal.status == Proposal.Status.EXECUTED:
            return proposal.executions.filter(status=Execution.Status.SUCCEEDED).first()
        if proposal.status in (
            Proposal.Status.REJECTED,
            Proposal.Status.CANCELLED,
            Proposal.Status.EXECUTION_FAILED,
        ):
            return None
        workflow = proposal.workflow
        if workflow.paused:
            logger.info("execution of proposal %s held: %s", proposal.pk, ERR_PAUSED_EXECUTION)
            return None
        auto = False
        try:
            arguments, approved_hash, auto = _approved(proposal)
        except ExecutionRefused as exc:
            if proposal.status == Proposal.Status.PENDING and not proposal.auto_executed:
                return None  # not decided yet: nothing to do, nothing to fail
            # Approved (by a human or by policy) yet refused, e.g. tampered arguments.
            refusal = str(exc)
        else:
            refusal = ""
        if auto and agents_sql.earlier_action_waiting(
            run_id=proposal.run_id, sequence=proposal.sequence
        ):
            return None  # an earlier action of its plan has not run: it starts after that
        # Automatic executions serialise on their grant's row: the daily caps and
        # the sample are decided under this lock (see _auto_reserve).
        # The kill switch, re-read now that the locks are held: the workflow row read
        # above may predate a pause that committed while this waited for them.
        if auto and not refusal:
            grant = governance_sql.grant_of(workflow.pk, proposal.tool, locked=True)
            paused = governance_sql.workflow_paused(workflow.pk)
        else:
            grant, paused = governance_sql.grant_and_pause(workflow.pk, proposal.tool)
        if paused:
            logger.info("execution of proposal %s held: %s", proposal.pk, ERR_PAUSED_EXECUTION)
            return None
        level = grant_level(workflow, grant)
        granted = {proposal.tool} if grant is not None and grant.enabled else set()
        tool = registry_for(workflow, granted=granted).get(proposal.tool)
        if not refusal and tool is None:
            refusal = ERR_TOOL_GONE.format(tool=proposal.tool)
        if not refusal and not _executable(level):
            # Not an integrity problem, just not allowed at this level: change nothing.
            audit_append(
                action="agent.tool.refused",
                actor=principal_for(workflow),
                workflow=workflow,
                obj=proposal,
                data={
                    "tool": proposal.tool,
                    "reason": ERR_LEVEL_TOO_LOW.format(tool=proposal.tool, level=level),
                },
            )
            return None
        if not refusal:
            try:
                args = tool.validate(arguments)
            except PydanticValidationError as exc:
                refusal = ERR_INVALID_FINAL.format(tool=proposal.tool, error=exc.errors()[:3])
        if not refusal:
            verdict = policy_evaluate(workflow=workflow, tool=tool, args=args, grant=grant)
            if verdict.verdict == Proposal.Verdict.DENY:
                refusal = ERR_POLICY_DENIES.format(rule=verdict.rule)
            elif auto and verdict.verdict != Proposal.Verdict.ALLOW:
                # Not an integrity problem: a human decides instead (caps reached).
                _hold_for_approval(
                    proposal, RULE_NO_LONGER_AUTO.format(tool=proposal.tool, rule=verdict.rule)
                )
                return None
        if refusal:
            execution = None
        else:
            key = execution_key(proposal, approved_hash)
            # A tool acting on this database commits its side effect with the
            # reservation, durably; any other's reservation commits relaxed (it can
            # be re-created from the idempotency key: agents.states).
            durable = tool.in_database
            # Every writer of this key holds the proposal's row lock (taken above), so
            # a missing row cannot appear before this transaction commits; the unique
            # key stays the last word.
            execution = Execution(
                idempotency_key=key,
                proposal=proposal,
                arguments=arguments,
                arguments_hash=approved_hash,
                principal=principal_for(workflow),
                auto=auto,
                attempts=1,
                started_at=timezone.now(),
            )
            # A human-approved action is usually on its first delivery: insert straight
            # away (ON CONFLICT DO NOTHING); a redelivery finds the row below. An
            # automatic one reserves its daily caps first, so it looks first.
            if auto or not states.execution_insert(
                execution, durable=durable, conflict="idempotency_key"
            ):
                found = agents_sql.execution_by_key(key)
                if found is not None:
                    execution = found
                    if execution.status == Execution.Status.SUCCEEDED:
                        return execution
                    execution.attempts += 1
                    execution.status = Execution.Status.RUNNING
                    execution.started_at = execution.started_at or timezone.now()
                    states.execution_move(
                        execution.pk,
                        to=Execution.Status.RUNNING,
                        durable=durable,
                        attempts=execution.attempts,
                        started_at=execution.started_at,
                    )
                else:  # first delivery of an automatic action
                    held = auto and _auto_reserve(
                        proposal=proposal, grant=grant, facts=tool.policy_facts(args), key=key
                    )
                    if held:
                        _hold_for_approval(proposal, held)
                        return None
                    states.execution_insert(execution, durable=durable)
            if proposal.work_item.status != WorkItem.Status.EXECUTING:
                proposal.work_item.status = WorkItem.Status.EXECUTING
                states.work_item_move(
                    proposal.work_item_id, to=WorkItem.Status.EXECUTING, durable=durable
                )
            if tool.in_database:
                # A tool acting on this database (the sandbox systems of record): its
                # side effect and the record of it commit with the reservation, durably,
                # in this one transaction, still holding the locks taken above (the
                # pause flag's among them). A crash anywhere in it leaves nothing to
                # recover: the retry starts over.
                return _run_and_record(proposal, execution, tool, args, in_transaction=True)
    if refusal:
        _fail(proposal, None, refusal)
        return None

    # The kill switch, once more, right before the side effect starts.
    if governance_sql.workflow_paused(workflow.pk, share_lock=False):
        states.execution_move(execution.pk, to=Execution.Status.PENDING)
        return None
    return _run_and_record(proposal, execution, tool, args, in_transaction=False)


def _run_and_record(
    proposal: Proposal, execution: Execution, tool: Any, args: Any, *, in_transaction: bool
) -> Execution:
    """Run the tool, then record its success. ``in_transaction``: inside the
    reservation's transaction (an in-database tool); otherwise the side effect has
    committed on its own and the record gets a transaction of its own."""
    workflow = proposal.workflow
    ctx = ToolContext(
        workflow=workflow,
        principal=principal_for(workflow),
        work_item=proposal.work_item,
        idempotency_key=execution.idempotency_key,
        executing=True,
    )
    try:
        result = tool.run(ctx, args)
    except TransientToolError as exc:
        if not in_transaction:  # in one, everything rolls back and the retry starts over
            Execution.objects.filter(pk=execution.pk).update(error=str(exc)[:5000])
        raise
    except ToolError as exc:
        _fail(proposal, execution, str(exc))
        return execution
    _test_delay()
    if in_transaction:
        return _record_success(proposal, execution, result, durable=True)
    # The record of an outside side effect commits relaxed: the retry finds the side
    # effect by its idempotency key (agents.states).
    with transaction.atomic():
        return _record_success(proposal, execution, result, durable=False)


def _record_success(
    proposal: Proposal, execution: Execution, result: Any, *, durable: bool
) -> Execution:
    """Inside a transaction: the proposal executed, its execution succeeded, then the
    plan's next action is enqueued or the item settled."""
    workflow = proposal.workflow
    # Conditional UPDATEs lock the rows in the usual order (the proposal, then its
    # execution) without reading them back first. If another delivery recorded the
    # success meanwhile, the proposal is already EXECUTED: nothing more to do.
    states.proposal_move(proposal.pk, to=Proposal.Status.EXECUTED)
    proposal.status = Proposal.Status.EXECUTED
    recorded = {
        "result": json.loads(json.dumps(result, default=str)),
        "finished_at": timezone.now(),
        "error": "",
    }
    if not states.execution_move(
        execution.pk, to=Execution.Status.SUCCEEDED, durable=durable, **recorded
    ):
        return Execution.objects.get(pk=execution.pk)
    execution.status = Execution.Status.SUCCEEDED
    for name, value in recorded.items():
        setattr(execution, name, value)
    audit_append(
        action="agent.tool.executed",
        actor=principal_for(workflow),
        workflow=workflow,
        obj=execution,
        data={
            "proposal": proposal.pk,
            "tool": proposal.tool,
            "idempotency_key": execution.idempotency_key,
            "arguments_hash": execution.arguments_hash,
            "auto": execution.auto,
        },
    )
    # A one-action plan is the proposal itself, and it has just run.
    if proposal.plan_size == 1:
        proposals = [proposal]
    else:
        proposals = agents_sql.plan(proposal.run_id, workflow=workflow)
    nxt = _next_to_execute(proposals, _plan_grants(workflow, proposals))
    if nxt is not None:
        _enqueue_execute(nxt.pk)
    else:
        _plan_settled(proposal.work_item_id, proposals)
    return execution


def run_for_work_item(*, work_item: WorkItem) -> Run | None:
    return work_item.runs.order_by("-attempt").first()


# --- Bulk ingest ------------------------------------------------------------------------

ERR_BATCH_DUPLICATE = "external_id “{external_id}” appears more than once in the batch."


@dataclass(frozen=True)
class NewWorkItem:
    external_id: str
    payload: Any
    title: str = ""


# Ids per fan-out message: a batch is at most 1000 items, so one message per request.
FAN_OUT_CHUNK = 1000


def _dispatch_many(ids: list[int]) -> None:
    """Send new items to workers: one ``run_agents`` message per chunk, which a worker
    fans out into one ``run_agent`` task per item (each item still gets its own run,
    retries and ack). Publishing a message per item cost the request ~1 ms each.

    A message lost to a broker outage leaves its items received; the stranded-work
    sweeper re-sends them one by one, as for single items."""
    from agents.tasks import run_agent, run_agents

    if len(ids) == 1:
        send_task(run_agent, ids[0])
        return
    for start in range(0, len(ids), FAN_OUT_CHUNK):
        send_task(run_agents, ids[start : start + FAN_OUT_CHUNK])


def work_items_fan_out(*, work_item_ids: list[int]) -> int:
    """The worker's half of ``_dispatch_many``: one ``run_agent`` per item still waiting
    for its first run, published over one producer connection. Returns how many."""
    from agents.tasks import run_agent

    waiting = list(
        WorkItem.objects.filter(pk__in=work_item_ids, status=WorkItem.Status.RECEIVED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    with run_agent.app.producer_or_acquire() as producer:
        for item_id in waiting:
            run_agent.apply_async((item_id,), producer=producer)
    return len(waiting)


def work_items_create_bulk(
    *, workflow: Workflow, items: list[NewWorkItem], source: str, principal: str = ""
) -> list[tuple[WorkItem, bool]]:
    """Create many work items at once, idempotent on (workflow, external id) like
    ``work_item_create``: one multi-row insert, one audit event for the batch, and a
    run dispatched for each new item when the transaction commits.

    Every item is validated first; a bad one raises ValidationError naming its index
    (``error.params["index"]``) and nothing is written. Ids a concurrent request
    inserts first come back as existing (only the ORM fallback of ``_insert_new``
    raises IntegrityError for them: callers then retry item by item).
    """
    if source not in WorkItem.Source.values:
        raise ValidationError(ERR_SOURCE.format(source=source), code="source")
    seen: set[str] = set()
    for index, new in enumerate(items):
        external_id = (new.external_id or "").strip()
        try:
            if not external_id or len(external_id) > 200:
                raise ValidationError(ERR_EXTERNAL_ID, code="external_id")
            if external_id in seen:
                raise ValidationError(
                    ERR_BATCH_DUPLICATE.format(external_id=external_id), code="duplicate"
                )
            _validate_payload(new.payload)
        except ValidationError as exc:
            raise ValidationError(exc.messages[0], code=exc.code, params={"index": index}) from exc
        seen.add(external_id)
    ids = [new.external_id.strip() for new in items]
    titles = [(new.title or str(new.payload.get("title", "")))[:300] for new in items]
    with transaction.atomic():
        inserted = _insert_new(
            workflow=workflow,
            rows=list(zip(ids, titles, (new.payload for new in items), strict=True)),
            source=source,
            principal=principal,
        )
        created = [inserted[external_id] for external_id in ids if external_id in inserted]
        fresh = {item.external_id for item in created}
        existing = {}
        if len(fresh) < len(ids):
            existing = {
                item.external_id: item
                for item in WorkItem.objects.filter(
                    workflow=workflow, external_id__in=[i for i in ids if i not in fresh]
                )
            }
        if created:
            audit_append(
                action="work_items.received",
                actor=principal or f"integration:{source}",
                workflow=workflow,
                data={
                    "count": len(created),
                    "source": source,
                    "external_ids": [item.external_id for item in created],
                },
            )
            if workflow.autonomy_level != AutonomyLevel.OFF:
                new_ids = [item.pk for item in created]
                transaction.on_commit(lambda: _dispatch_many(new_ids))
    by_external = {**existing, **{item.external_id: item for item in created}}
    return [(by_external[external_id], external_id in fresh) for external_id in ids]


def _insert_new(
    *, workflow: Workflow, rows: list[tuple[str, str, Any]], source: str, principal: str
) -> dict[str, WorkItem]:
    """Insert the rows (external id, title, payload) whose external id the workflow
    does not hold yet; returns the new items by external id. One statement on
    PostgreSQL (``agents.sql.work_items_insert_new``), the ORM elsewhere."""
    inserted = agents_sql.work_items_insert_new(
        workflow=workflow, rows=rows, source=source, principal=principal
    )
    if inserted is None:
        return _insert_new_orm(workflow=workflow, rows=rows, source=source, principal=principal)
    return inserted


def _insert_new_orm(
    *, workflow: Workflow, rows: list[tuple[str, str, Any]], source: str, principal: str
) -> dict[str, WorkItem]:
    """``_insert_new`` through the ORM. A concurrent insert of the same id raises
    IntegrityError here: callers fall back to the original item."""
    taken = set(
        WorkItem.objects.filter(
            workflow=workflow, external_id__in=[external_id for external_id, _, _ in rows]
        ).values_list("external_id", flat=True)
    )
    created = WorkItem.objects.bulk_create(
        [
            WorkItem(
                workflow=workflow,
                external_id=external_id,
                payload=payload,
                source=source,
                title=title,
                source_principal=principal[:150],
            )
            for external_id, title, payload in rows
            if external_id not in taken
        ],
        batch_size=500,
    )
    return {item.external_id: item for item in created}


# --- The sweeper ----------------------------------------------------------------------

STRANDED_AFTER = timedelta(seconds=int(os.environ.get("TENURE_STRANDED_AFTER_SECONDS", "120")))


def stranded_redispatch(*, now: Any = None) -> dict[str, int]:
    """Re-send work a broker outage (or a lost task) left behind: items received but
    never started, items whose run's worker and task were both lost, and approved
    plans whose next action has no finished execution.
    Both tasks are idempotent, so re-sending something still queued is harmless."""
    from agents.tasks import run_agent

    now = now or timezone.now()
    cutoff = now - STRANDED_AFTER
    items = list(
        WorkItem.objects.filter(
            status=WorkItem.Status.RECEIVED,
            updated_at__lt=cutoff,
            workflow__paused=False,
        )
        .exclude(workflow__autonomy_level=AutonomyLevel.OFF)
        .values_list("pk", flat=True)[:1000]
    )
    # Runs whose worker died and whose task died with the broker (a Redis restart
    # without persistence loses unacknowledged messages too): run_agent takes the
    # run over once it is stale, and retries until then.
    items += list(
        WorkItem.objects.filter(
            status=WorkItem.Status.RUNNING,
            updated_at__lt=cutoff,
            workflow__paused=False,
        ).values_list("pk", flat=True)[:1000]
    )
    for item_id in items:
        send_task(run_agent, item_id)
    run_ids = list(
        Proposal.objects.filter(
            status__in=EXECUTABLE_STATUSES,
            work_item__status=WorkItem.Status.EXECUTING,
            work_item__updated_at__lt=cutoff,
            workflow__paused=False,
        )
        .exclude(executions__status=Execution.Status.SUCCEEDED)
        .values_list("run_id", flat=True)
        .distinct()[:500]
    )
    # Auto-allowed actions whose task was lost: at limited nobody approves them, so
    # nothing else would ever start them.
    run_ids += list(
        Proposal.objects.filter(
            status=Proposal.Status.PENDING,
            auto_executed=True,
            work_item__updated_at__lt=cutoff,
            workflow__paused=False,
        )
        .exclude(run_id__in=run_ids)
        .values_list("run_id", flat=True)
        .distinct()[:500]
    )
    plans = 0
    for run_id in run_ids:
        plans += len(plan_dispatch_ready(run_id=run_id))
    return {"items": len(items), "actions": plans}

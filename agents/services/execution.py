"""Executing an approved (or auto-allowed) action exactly once: the idempotency key,
the daily caps and the sample at limited, the kill switch re-read before the side
effect, and the record of what happened."""

from __future__ import annotations

import hashlib
import json
import logging
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from pydantic import ValidationError as PydanticValidationError

from agents import sql as agents_sql
from agents import states
from agents.models import Escalation, Execution, Proposal, WorkItem
from agents.notifications import notify_escalation
from agents.policy import grant_level, policy_evaluate
from agents.principals import principal_for
from agents.services.plans import (
    EXECUTABLE_STATUSES,
    _decision,
    _enqueue_execute,
    _executable,
    _next_to_execute,
    _plan_grants,
    _plan_settled,
)
from agents.tools import ToolContext, ToolError, TransientToolError, arguments_hash, registry_for
from agents.tracing import execution_dispatch
from governance import privacy
from governance import sql as governance_sql
from governance.audit import audit_append
from governance.models import ToolGrant, Workflow

logger = logging.getLogger(__name__)

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


class ExecutionRefused(Exception):  # a refusal, with a message to show
    pass


def _legacy_hash(arguments: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(arguments, sort_keys=True).encode()).hexdigest()


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
        # A tool's message may quote the values it was given: stored with tokens.
        error = privacy.vault_for(proposal.work_item.payload).protect(error)
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
            execution_dispatch(execution=execution, proposal=proposal)
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
        if (
            not auto
            and not refusal
            and proposal.plan_size > 1
            and agents_sql.human_decision_waiting(run_id=proposal.run_id)
        ):
            # A plan runs once none of its actions waits for a human; one that was
            # sent to run may find one waiting again (its decision was undone). The
            # next decision sends it again.
            return None
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
                # Stored with the subject's tokens; the tool acts on the values.
                args = tool.validate(privacy.reveal(arguments))
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
    vault = privacy.vault_for(proposal.work_item.payload)
    if vault.tokens:  # the tool reads the item's values, not its tokens
        proposal.work_item.payload = vault.reveal(proposal.work_item.payload)
    ctx = ToolContext(
        workflow=workflow,
        principal=principal_for(workflow),
        work_item=proposal.work_item,
        idempotency_key=execution.idempotency_key,
        executing=True,
    )
    try:
        result = vault.protect(tool.run(ctx, args))
    except TransientToolError as exc:
        if not in_transaction:  # in one, everything rolls back and the retry starts over
            Execution.objects.filter(pk=execution.pk).update(error=vault.protect(str(exc)[:5000]))
        raise
    except ToolError as exc:
        _fail(proposal, execution, str(exc))
        return execution
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
    execution_dispatch(execution=execution, proposal=proposal)
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

"""Plans: what runs next once a decision or an execution lands, in plan order; what
a resume restarts; and how an item settles when nothing is left to run.

Every action of a plan is judged on its own: a rejection cancels nothing (the
reviewer decides the rest, or rejects it in one go). The one cancellation left is
an execution failure's: what follows a failed action is cancelled, unjudged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db import transaction

from agents import queue, states
from agents import sql as agents_sql
from agents.models import Proposal, WorkItem
from agents.policy import grant_level
from agents.principals import principal_for
from agents.services.work_items import work_items_dispatch_received
from governance.audit import audit_append
from governance.models import AutonomyLevel, ToolGrant, Workflow

EXECUTABLE_STATUSES = (Proposal.Status.ACCEPTED, Proposal.Status.EDITED)
# An action failed and the rest of its plan was cancelled: nothing more runs.
_STOPPED = (Proposal.Status.EXECUTION_FAILED, Proposal.Status.CANCELLED)
RULE_HELD_AFTER_REJECTION = (
    "An earlier action of this plan ({tool}, proposal #{id}) was rejected: "
    "a human decides whether this one still runs."
)


def _level_of(proposal: Proposal, grants: dict[str, ToolGrant]) -> str:
    return grant_level(proposal.workflow, grants.get(proposal.tool))


def _executable(level: str) -> bool:
    return AutonomyLevel.rank(level) >= AutonomyLevel.rank(AutonomyLevel.SUPERVISED)


def _decision(proposal: Proposal) -> Any:
    try:
        return proposal.decision  # reviews.Decision, by its reverse relation
    except (ObjectDoesNotExist, AttributeError):
        return None


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
        if proposal.status in (Proposal.Status.EXECUTED, Proposal.Status.REJECTED):
            continue  # done, or judged not to run: the plan goes on without it
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
    transaction.on_commit(lambda: queue.send(queue.EXECUTE_ACTION, proposal_id))


@dataclass(frozen=True)
class PlanDispatch:
    """What one look at a plan found and did."""

    enqueued: list[int]  # the action sent to execute (on commit), if any
    awaiting_human: bool  # an action of the plan still waits for a human's decision
    all_rejected: bool  # every action of the plan was rejected
    held: list[int]  # auto-allowed actions held for a human after a rejection


def _hold_after_rejection(proposals: list[Proposal]) -> list[int]:
    """An auto-allowed action after a rejected one does not run on its own: the plan
    it belonged to is no longer the one a human would carry out. It waits for a
    human, and its rule says why (inside the caller's transaction)."""
    first = next((p for p in proposals if p.status == Proposal.Status.REJECTED), None)
    if first is None:
        return []
    held = [
        p
        for p in proposals
        if p.sequence > first.sequence and p.status == Proposal.Status.PENDING and p.auto_executed
    ]
    if not held:
        return []
    rule = RULE_HELD_AFTER_REJECTION.format(tool=first.tool, id=first.pk)
    Proposal.objects.filter(pk__in=[p.pk for p in held], auto_executed=True).update(
        auto_executed=False,
        sampled_for_review=False,
        verdict=Proposal.Verdict.NEEDS_APPROVAL,
        verdict_rule=rule,
    )
    for p in held:
        p.auto_executed, p.sampled_for_review = False, False
        p.verdict, p.verdict_rule = Proposal.Verdict.NEEDS_APPROVAL, rule
        audit_append(
            action="agent.tool.held_for_approval",
            actor=principal_for(p.workflow),
            workflow=p.workflow,
            obj=p,
            data={"tool": p.tool, "rule": rule},
        )
    return [p.pk for p in held]


def plan_dispatch(*, run_id: int) -> PlanDispatch:
    """Called by reviews after every decision, inside its transaction.

    Each action is judged on its own: a rejection cancels nothing. While any action
    waits for a human, nothing a human approved runs (an auto-allowed action after
    a rejected one waits for a human too). Once none waits, at supervised or above
    the approved actions execute in sequence, skipping the rejected ones (the first
    is enqueued here; each success enqueues the next); in shadow mode nothing
    executes and the item is resolved: it succeeded when nothing was rejected.
    """
    # savepoint=False: every caller lets an error propagate (the whole transaction
    # rolls back), so a savepoint would cost two round trips and buy nothing.
    with transaction.atomic(savepoint=False):
        # Only the proposals' rows are locked: locking the workflow's would block every
        # concurrent insert that references it (deferred FK checks) and deadlock.
        proposals = agents_sql.plan(run_id, locked=True)
        if not proposals:
            return PlanDispatch(enqueued=[], awaiting_human=False, all_rejected=False, held=[])
        # The work item is written with conditional UPDATEs (agents.states), which
        # lock it after the proposals, as before, and re-check its state under the lock.
        item_id = proposals[0].work_item_id
        held = _hold_after_rejection(proposals)
        rejected = [p for p in proposals if p.status == Proposal.Status.REJECTED]
        all_rejected = len(rejected) == len(proposals)
        if any(p.status == Proposal.Status.PENDING and not p.auto_executed for p in proposals):
            if held:
                states.work_item_move(item_id, to=WorkItem.Status.AWAITING_REVIEW)
            return PlanDispatch(
                enqueued=[], awaiting_human=True, all_rejected=all_rejected, held=held
            )
        if any(p.status in _STOPPED for p in proposals):
            # An action failed and what followed it was cancelled: its escalation
            # holds the item now.
            return PlanDispatch(enqueued=[], awaiting_human=False, all_rejected=False, held=[])
        nxt = _next_to_execute(proposals, _plan_grants(proposals[0].workflow, proposals))
        if nxt is None:
            # Nothing to execute (shadow mode, all rejected, or all done): the outcome.
            states.work_item_resolve(item_id, succeeded=not rejected)
            return PlanDispatch(
                enqueued=[], awaiting_human=False, all_rejected=all_rejected, held=[]
            )
        states.work_item_move(item_id, to=WorkItem.Status.EXECUTING)
        _enqueue_execute(nxt.pk)
        return PlanDispatch(
            enqueued=[nxt.pk], awaiting_human=False, all_rejected=all_rejected, held=[]
        )


def plan_dispatch_ready(*, run_id: int) -> list[int]:
    """``plan_dispatch``, for callers that only need what was enqueued."""
    return plan_dispatch(run_id=run_id).enqueued


def resume_dispatch(*, workflow_id: int) -> None:
    """A resume hook (governance.hooks "on_resume"), run once the resume has
    committed: a worker restarts the held work. If the broker is down, the sweeper
    re-sends approved plans, automatic actions and received items itself."""
    queue.send(queue.RESUME_HELD_WORK, workflow_id)


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
    for a human starts once that one is approved (and waits for a human too if
    that one is rejected: ``plan_dispatch``).

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

"""Where the runtime's records change status: the one writer of each status column.

For each stateful model a table below says which statuses may follow which. A
move is one conditional UPDATE whose WHERE clause admits exactly the statuses the
table lists as sources of the target, so a stale or concurrent writer changes
nothing (0 rows) instead of making a transition the table does not have; the
caller reads the count. A move to the status a row already has is a no-op unless
the table lists that self-move (a run taken over by a new worker). Creating a row
sets its first status; only the functions here change it afterwards
(``tests/agents/test_states.py`` holds the rest of the code to that).

Durability. A move may commit *relaxed* (``durable=False``): the transaction's
COMMIT then returns without waiting for the WAL flush (PostgreSQL's
``synchronous_commit = off``, for that transaction only). Only state the system
re-creates on its own may do so: a run's claim and its end (the sweeper runs the
item again), an execution's reservation and its record (the retry finds the side
effect by its idempotency key). A human's decision and a side effect commit
durably, and because the log is flushed in order their commit makes every earlier
one durable too. The setting rides on the move's own statement
(``sqlkit.relaxed_commit_expr``), so it costs no round trip; these functions and the
audit seal are the only callers of that helper.

Undo. A reviewer may take back their own decision for a few seconds, while nothing
of its plan has executed: the proposal goes back to PENDING and its item to
AWAITING_REVIEW. Those moves exist only in ``UNDO_MOVES`` and only
``proposal_undo`` and ``work_item_reopen`` make them.

Claims (``reviews.Claim``) have no status column: their lifecycle (free -> held ->
renewed -> taken by a decision or released) is written only by ``reviews.claims``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from django.db.models import Model
from django.utils import timezone

from agents.models import Execution, Proposal, Run, WorkItem
from governance import sqlkit

_Item = WorkItem.Status
_Prop = Proposal.Status
_Run = Run.Status
_Exec = Execution.Status

# from -> the statuses that may follow it.
WORK_ITEM_MOVES: dict[str, frozenset[str]] = {
    _Item.RECEIVED: frozenset({_Item.RUNNING, _Item.RESOLVED, _Item.CANCELLED}),
    _Item.RUNNING: frozenset(
        {_Item.RUNNING, _Item.AWAITING_REVIEW, _Item.EXECUTING, _Item.ESCALATED, _Item.RESOLVED}
    ),
    _Item.AWAITING_REVIEW: frozenset({_Item.EXECUTING, _Item.ESCALATED, _Item.RESOLVED}),
    _Item.EXECUTING: frozenset({_Item.AWAITING_REVIEW, _Item.ESCALATED, _Item.RESOLVED}),
    # Escalated: resolved by a human, sent back to the agent, or (an approved plan
    # whose earlier action failed was cancelled) left as it is.
    _Item.ESCALATED: frozenset(
        {_Item.RECEIVED, _Item.AWAITING_REVIEW, _Item.EXECUTING, _Item.RESOLVED}
    ),
    _Item.RESOLVED: frozenset(),
    _Item.FAILED: frozenset(),
    _Item.CANCELLED: frozenset(),
}

PROPOSAL_MOVES: dict[str, frozenset[str]] = {
    # Decided by a human or a report, cancelled unjudged when an earlier action of
    # its plan failed to execute, or run on its own (auto-executed at limited and above).
    _Prop.PENDING: frozenset(
        {
            _Prop.ACCEPTED,
            _Prop.EDITED,
            _Prop.REJECTED,
            _Prop.CANCELLED,
            _Prop.EXECUTED,
            _Prop.EXECUTION_FAILED,
        }
    ),
    _Prop.ACCEPTED: frozenset({_Prop.EXECUTED, _Prop.EXECUTION_FAILED, _Prop.CANCELLED}),
    _Prop.EDITED: frozenset({_Prop.EXECUTED, _Prop.EXECUTION_FAILED, _Prop.CANCELLED}),
    _Prop.REJECTED: frozenset(),
    _Prop.EXECUTED: frozenset(),
    _Prop.EXECUTION_FAILED: frozenset(),
    _Prop.CANCELLED: frozenset(),
}

RUN_MOVES: dict[str, frozenset[str]] = {
    _Run.QUEUED: frozenset({_Run.RUNNING}),
    # RUNNING -> RUNNING: a dead worker's run taken over (with a new lease).
    _Run.RUNNING: frozenset({_Run.RUNNING, _Run.PROPOSED, _Run.ESCALATED, _Run.FAILED}),
    _Run.PROPOSED: frozenset(),
    _Run.ESCALATED: frozenset(),
    _Run.FAILED: frozenset(),
}

EXECUTION_MOVES: dict[str, frozenset[str]] = {
    _Exec.PENDING: frozenset({_Exec.RUNNING}),
    # RUNNING -> RUNNING: a redelivery tries again (one more attempt, same key);
    # RUNNING -> PENDING: the workflow was paused before the side effect started.
    _Exec.RUNNING: frozenset({_Exec.RUNNING, _Exec.PENDING, _Exec.SUCCEEDED, _Exec.FAILED}),
    _Exec.SUCCEEDED: frozenset(),
    _Exec.FAILED: frozenset(),
}

TABLES: dict[type[Model], dict[str, frozenset[str]]] = {
    WorkItem: WORK_ITEM_MOVES,
    Proposal: PROPOSAL_MOVES,
    Run: RUN_MOVES,
    Execution: EXECUTION_MOVES,
}

# The moves only an undo makes (``reviews.services.decision_undo``: a reviewer takes
# back their own decision within its window, while nothing of its plan has executed).
# They are kept apart from the tables above so no other writer can ever use them: a
# stray move to PENDING or to AWAITING_REVIEW still changes nothing, and a resolved
# item stays terminal for everyone but the undo.
UNDO_MOVES: dict[type[Model], dict[str, frozenset[str]]] = {
    # A decided proposal goes back to the queue; an executed or cancelled one never.
    Proposal: {
        _Prop.ACCEPTED: frozenset({_Prop.PENDING}),
        _Prop.EDITED: frozenset({_Prop.PENDING}),
        _Prop.REJECTED: frozenset({_Prop.PENDING}),
    },
    # Its item is awaiting review again: the undone decision may have settled it
    # (shadow mode) or sent its plan to execute (before anything started).
    WorkItem: {
        _Item.RESOLVED: frozenset({_Item.AWAITING_REVIEW}),
        _Item.EXECUTING: frozenset({_Item.AWAITING_REVIEW}),
    },
}


class IllegalMove(ValueError):
    """A move to a status no status may lead to: a programming error, not a race."""


@cache
def sources(model: type[Model], to: str) -> tuple[str, ...]:
    """The statuses a row of ``model`` may move to ``to`` from, in ladder order."""
    table = TABLES[model]
    found = tuple(status for status, following in table.items() if to in following)
    if not found:
        raise IllegalMove(f"No {model.__name__} status may move to {to!r}.")
    return found


def _move(
    model: type[Model],
    pk: Any,
    *,
    to: str,
    fields: dict[str, Any],
    durable: bool,
    where: str = "",
    args: Sequence[Any] = (),
) -> int:
    allowed = sources(model, to)
    marks = ", ".join(["%s"] * len(allowed))
    condition = f"status IN ({marks})" + (f" AND ({where})" if where else "")
    return sqlkit.update(
        model,
        pk,
        {"status": to, **fields},
        condition,
        *allowed,
        *args,
        returning="" if durable else sqlkit.relaxed_commit_expr(),
    )


def work_item_move(item_id: int, *, to: str, durable: bool = True, **fields: Any) -> int:
    """Move one work item to ``to`` (its ``updated_at`` too). Returns rows changed."""
    fields.setdefault("updated_at", timezone.now())
    return _move(WorkItem, item_id, to=to, fields=fields, durable=durable)


def work_item_resolve(item_id: int, *, succeeded: bool) -> int:
    now = timezone.now()
    return work_item_move(item_id, to=_Item.RESOLVED, succeeded=succeeded, resolved_at=now)


def proposal_move(proposal_id: int, *, to: str, **fields: Any) -> int:
    """Move one proposal to ``to``. Decisions commit durably (a human's word)."""
    return _move(Proposal, proposal_id, to=to, fields=fields, durable=True)


def run_move(
    run_id: int, *, to: str, lease: str | None = None, durable: bool = True, **fields: Any
) -> int:
    """Move one run to ``to``; with ``lease``, only while that lease still holds it
    (the worker that claimed it is the one finishing it)."""
    where, args = "", ()
    if lease is not None:
        where, args = f"{sqlkit.json_text('state', 'lease')} = %s", (lease,)
    return _move(Run, run_id, to=to, fields=fields, durable=durable, where=where, args=args)


def run_start(run: Run, *, durable: bool = False) -> Run:
    """Write a claimed run as RUNNING: insert a new one, or take a dead worker's
    over (its row moves RUNNING -> RUNNING with the new lease and a clean count)."""
    run.status = _Run.RUNNING
    if run.pk is None:
        sqlkit.insert([run], relaxed=not durable)
        return run
    fields = {
        f.attname: getattr(run, f.attname)
        for f in Run._meta.concrete_fields
        if not f.primary_key and f.attname not in ("status", "work_item_id", "attempt")
    }
    if not _move(Run, run.pk, to=_Run.RUNNING, fields=fields, durable=durable):
        raise IllegalMove(f"Run {run.pk} is no longer running or queued; not taken over.")
    return run


def execution_move(execution_id: int, *, to: str, durable: bool = True, **fields: Any) -> int:
    return _move(Execution, execution_id, to=to, fields=fields, durable=durable)


def execution_insert(execution: Execution, *, durable: bool, conflict: str = "") -> bool:
    """Write a new execution (its reservation) as RUNNING. With ``conflict`` (the
    idempotency key's column), nothing is written when a row with that key exists:
    returns whether it was inserted."""
    execution.status = _Exec.RUNNING
    if conflict:
        return sqlkit.insert_new(execution, conflict=conflict, relaxed=not durable)
    sqlkit.insert([execution], relaxed=not durable)
    return True


def _undo_move(model: type[Model], pk: Any, *, to: str, fields: dict[str, Any]) -> int:
    allowed = tuple(s for s, following in UNDO_MOVES[model].items() if to in following)
    marks = ", ".join(["%s"] * len(allowed))
    return sqlkit.update(model, pk, {"status": to, **fields}, f"status IN ({marks})", *allowed)


def proposal_undo(proposal_id: int) -> int:
    """An undone decision's proposal, back to PENDING (only from a decided status; see
    ``UNDO_MOVES``). Durable: it takes back a human's word."""
    return _undo_move(Proposal, proposal_id, to=_Prop.PENDING, fields={"decided_at": None})


def work_item_reopen(item_id: int) -> int:
    """An undone decision's item, awaiting review again, with no outcome (only from
    resolved or executing; see ``UNDO_MOVES``)."""
    fields = {"succeeded": None, "resolved_at": None, "updated_at": timezone.now()}
    return _undo_move(WorkItem, item_id, to=_Item.AWAITING_REVIEW, fields=fields)


def plan_rest_cancel(*, run_id: int, after: int) -> int:
    """Cancel the actions of a plan after ``after`` that have not run (a failed
    execution stops what follows it)."""
    return Proposal.objects.filter(
        run_id=run_id, sequence__gt=after, status__in=sources(Proposal, _Prop.CANCELLED)
    ).update(status=_Prop.CANCELLED)

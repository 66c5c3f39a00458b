"""The runtime's hand-written statements: a run's claim, a plan with its decisions
and grants, a proposal about to execute, an execution found by its key, and the
one-statement ingest of new work items.

Each runs on every run, decision or execution, where a profile showed the ORM's
compile of the join costing more than the statement (0.3-1 ms of CPU each); each
has a parity test against its ORM form (``tests/architecture/test_sql_parity.py``).
Status values come from the models. Writes of a status go through
``agents.states``, never here.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.utils import timezone

from agents.models import Execution, Proposal, Run, WorkItem
from governance import sqlkit
from governance.models import AutonomyLevel, ToolGrant, Workflow


def _decision_model() -> Any:
    """reviews.Decision, reached through Proposal's reverse relation (the runtime does
    not import the reviews app)."""
    return Proposal._meta.get_field("decision").related_model


@cache
def _item_to_claim_sql() -> str:
    return (
        f"SELECT {sqlkit.columns(WorkItem, 'i')}, {sqlkit.columns(Workflow, 'w')},"  # noqa: S608 - names from the models, values bound
        f" (SELECT r.id FROM {sqlkit.table(Run)} r WHERE r.work_item_id = i.id"
        " ORDER BY r.attempt DESC LIMIT 1)"
        f" FROM {sqlkit.table(WorkItem)} i JOIN {sqlkit.table(Workflow)} w ON w.id = i.workflow_id"
        f" WHERE i.id = %s{sqlkit.lock('FOR UPDATE OF i')}"
    )


def item_to_claim(work_item_id: int) -> WorkItem | None:
    """The work item, locked (its row only: the workflow's is read, not locked; a FOR
    UPDATE on it would serialise every claim and deadlock with executions' deferred
    FK checks), with its workflow and its latest run's id (``latest_run_id``)."""
    rows = sqlkit.fetch(_item_to_claim_sql(), [work_item_id])
    if not rows:
        return None
    row = rows[0]
    item = sqlkit.build(WorkItem, row)
    item.workflow = sqlkit.build(Workflow, row, sqlkit.width(WorkItem))
    item.latest_run_id = row[-1]
    return item


@cache
def _item_workflow_limits_sql() -> str:
    return (
        f"SELECT w.id, w.max_seconds FROM {sqlkit.table(WorkItem)} i"  # noqa: S608 - names from the models, values bound
        f" JOIN {sqlkit.table(Workflow)} w ON w.id = i.workflow_id WHERE i.id = %s"
    )


def item_workflow_limits(work_item_id: int) -> tuple[int, int] | None:
    """(workflow id, its run time budget in seconds) of a work item, unlocked: what
    the throttle needs before a run claims the item."""
    rows = sqlkit.fetch(_item_workflow_limits_sql(), [work_item_id])
    return (rows[0][0], rows[0][1]) if rows else None


@cache
def _plan_sql(*, with_workflow: bool, locked: bool) -> str:
    decision = _decision_model()
    return (
        f"SELECT {sqlkit.columns(Proposal, 'p')}, {sqlkit.columns(decision, 'd')},"  # noqa: S608 - names from the models, values bound
        " g.autonomy_level, g.enabled"
        + (f", {sqlkit.columns(Workflow, 'w')}" if with_workflow else "")
        + f" FROM {sqlkit.table(Proposal)} p"
        f" LEFT JOIN {sqlkit.table(decision)} d ON d.proposal_id = p.id"
        f" LEFT JOIN {sqlkit.table(ToolGrant)} g"
        " ON g.workflow_id = p.workflow_id AND g.tool = p.tool"
        + (f" JOIN {sqlkit.table(Workflow)} w ON w.id = p.workflow_id" if with_workflow else "")
        + " WHERE p.run_id = %s ORDER BY p.sequence"
        + (sqlkit.lock("FOR UPDATE OF p") if locked else "")
    )


def plan(run_id: int, *, workflow: Workflow | None = None, locked: bool = False) -> list[Proposal]:
    """A run's proposals in sequence order, each with its decision (LEFT JOIN, never
    locked) and its tool's grant (level and enabled, as ``grant_level`` and
    ``grant_enabled``; None when there is none) read in the same statement, so the
    plan dispatcher needs no separate query for the grants (the executor still reads
    the grant itself, fresh, before anything runs). ``locked`` locks the proposals
    (only their rows: locking the workflow's would block every insert referencing
    it). The workflow is joined unless it is in hand."""
    decision_rel = Proposal._meta.get_field("decision")
    decision = decision_rel.related_model
    with_workflow = workflow is None
    rows = sqlkit.fetch(_plan_sql(with_workflow=with_workflow, locked=locked), [run_id])
    out = []
    at_decision = sqlkit.width(Proposal)
    at_grant = at_decision + sqlkit.width(decision)
    for row in rows:
        proposal = sqlkit.build(Proposal, row)
        decision_rel.set_cached_value(proposal, sqlkit.build(decision, row, at_decision))
        proposal.grant_level, proposal.grant_enabled = row[at_grant], row[at_grant + 1]
        if with_workflow:
            workflow = sqlkit.build(Workflow, row, at_grant + 2)
        proposal.workflow = workflow
        out.append(proposal)
    return out


@cache
def _proposal_to_execute_sql() -> str:
    decision = _decision_model()
    return (
        f"SELECT {sqlkit.columns(Proposal, 'p')}, {sqlkit.columns(Workflow, 'w')},"  # noqa: S608 - names from the models, values bound
        f" {sqlkit.columns(WorkItem, 'i')}, {sqlkit.columns(decision, 'd')},"
        f" (SELECT COUNT(*) FROM {sqlkit.table(Proposal)} q WHERE q.run_id = p.run_id)"
        f" FROM {sqlkit.table(Proposal)} p"
        f" JOIN {sqlkit.table(Workflow)} w ON w.id = p.workflow_id"
        f" JOIN {sqlkit.table(WorkItem)} i ON i.id = p.work_item_id"
        f" LEFT JOIN {sqlkit.table(decision)} d ON d.proposal_id = p.id"
        f" WHERE p.id = %s{sqlkit.lock('FOR UPDATE OF p')}"
    )


def proposal_to_execute(proposal_id: int) -> Proposal | None:
    """The proposal, locked, with its workflow, work item and decision (LEFT JOIN, not
    locked) and its plan's size (``plan_size``), which never changes once the runner
    wrote the plan (in one transaction): a one-action plan needs no second look."""
    rows = sqlkit.fetch(_proposal_to_execute_sql(), [proposal_id])
    if not rows:
        return None
    decision_rel = Proposal._meta.get_field("decision")
    row = rows[0]
    at = 0
    parts = []
    for model in (Proposal, Workflow, WorkItem, decision_rel.related_model):
        parts.append(sqlkit.build(model, row, at))
        at += sqlkit.width(model)
    proposal, workflow, item, decision = parts
    proposal.workflow = workflow
    proposal.work_item = item
    decision_rel.set_cached_value(proposal, decision)
    proposal.plan_size = row[at]
    return proposal


# The levels at which an approved action executes (``plans._executable``).
_RUNNING_LEVELS = (AutonomyLevel.SUPERVISED, AutonomyLevel.LIMITED, AutonomyLevel.AUTONOMOUS)


@cache
def _earlier_action_waiting_sql() -> str:
    decision = _decision_model()
    runs = ", ".join(["%s"] * len(_RUNNING_LEVELS))
    return (
        f"SELECT 1 FROM {sqlkit.table(Proposal)} p"  # noqa: S608 - names from the models, values bound
        f" LEFT JOIN {sqlkit.table(decision)} d ON d.proposal_id = p.id"
        f" LEFT JOIN {sqlkit.table(ToolGrant)} g"
        " ON g.workflow_id = p.workflow_id AND g.tool = p.tool"
        f" JOIN {sqlkit.table(Workflow)} w ON w.id = p.workflow_id"
        " WHERE p.run_id = %s AND p.sequence < %s AND (p.status IN (%s, %s, %s)"
        " OR (p.status IN (%s, %s)"
        f" AND d.autonomy_level IN ({runs}) AND g.enabled AND g.autonomy_level IN ({runs})"
        f" AND w.autonomy_level IN ({runs}))) LIMIT 1"
    )


def earlier_action_waiting(*, run_id: int, sequence: int) -> bool:
    """Whether an action before ``sequence`` in the plan may still run (or stopped
    the plan): one pending (a human's decision, or an automatic action not run yet),
    one approved to run and not run yet, or one that failed or was cancelled. An
    executed or rejected action, and one accepted at shadow (it records what the
    human did and never executes), hold nothing after it."""
    levels = [str(level) for level in _RUNNING_LEVELS]
    return bool(
        sqlkit.fetch(
            _earlier_action_waiting_sql(),
            [
                run_id,
                sequence,
                Proposal.Status.PENDING,
                Proposal.Status.CANCELLED,
                Proposal.Status.EXECUTION_FAILED,
                Proposal.Status.ACCEPTED,
                Proposal.Status.EDITED,
                *levels,
                *levels,
                *levels,
            ],
        )
    )


def execution_by_key(key: str) -> Execution | None:
    """The execution holding ``key``, locked."""
    rows = sqlkit.fetch(
        f"SELECT {sqlkit.columns(Execution, 'x')} FROM {sqlkit.table(Execution)} x"  # noqa: S608 - names from the model, values bound
        f" WHERE x.idempotency_key = %s{sqlkit.lock()}",
        [key],
    )
    return sqlkit.build(Execution, rows[0]) if rows else None


@cache
def _human_decision_waiting_sql() -> str:
    awaiting = sqlkit.conditions("p", Proposal.AWAITING_REVIEW)
    return f"SELECT 1 FROM {sqlkit.table(Proposal)} p WHERE p.run_id = %s AND {awaiting} LIMIT 1"  # noqa: S608 - names and statuses from the model, values bound


def human_decision_waiting(*, run_id: int) -> bool:
    """Whether an action of the plan waits for a human's decision."""
    return bool(sqlkit.fetch(_human_decision_waiting_sql(), [run_id]))


# The columns the one-statement insert writes: every concrete field of WorkItem. A
# field added later makes ``work_items_insert_new`` answer None (callers fall back to
# the ORM: slower, still correct) until the statement learns the new column.
_INSERT_FIELDS = frozenset(
    {
        "id", "workflow", "external_id", "title", "payload", "source", "source_principal",
        "status", "succeeded", "sla_due_at", "created_at", "updated_at", "resolved_at",
    }
)  # fmt: skip


def work_items_insert_new(
    *, workflow: Workflow, rows: list[tuple[str, str, Any]], source: str, principal: str
) -> dict[str, WorkItem] | None:
    """Insert the rows (external id, title, payload) whose external id the workflow
    does not hold yet; the new items by external id. Rows already there (or inserted
    first by a concurrent request) are skipped without an error. None where this
    statement does not apply (not PostgreSQL, or the model grew a column).

    One ``INSERT … SELECT FROM jsonb_to_recordset(%s) ON CONFLICT DO NOTHING RETURNING``:
    the rows travel as one JSON document (one C-speed encode, one parameter), encoded
    as the JSONField would (DjangoJSONEncoder). The ORM's bulk_create cost ~100 µs a
    row to compile and could not skip conflicts and still return ids.
    """
    if (
        connection.vendor != "postgresql"
        or {f.name for f in WorkItem._meta.concrete_fields} != _INSERT_FIELDS
    ):
        return None
    now = timezone.now()
    principal = principal[:150]
    document = json.dumps(
        [{"e": external_id, "t": title, "p": payload} for external_id, title, payload in rows],
        cls=DjangoJSONEncoder,
    )
    statement = (
        f"INSERT INTO {sqlkit.table(WorkItem)} (workflow_id, "  # noqa: S608 - names from the model, values bound
        "external_id, title, payload, source, source_principal, status, succeeded, "
        "sla_due_at, created_at, updated_at, resolved_at) "
        "SELECT %s, r.e, r.t, r.p, %s, %s, %s, NULL, NULL, %s, %s, NULL "
        "FROM jsonb_to_recordset(%s::jsonb) AS r(e text, t text, p jsonb) "
        "ON CONFLICT (workflow_id, external_id) DO NOTHING RETURNING id, external_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            statement,
            [workflow.pk, source, principal, WorkItem.Status.RECEIVED, now, now, document],
        )
        returned = cursor.fetchall()
    by_external = {external_id: (title, payload) for external_id, title, payload in rows}
    # Rows as the database holds them, built the way a query builds them (positional
    # from_db: several times cheaper than keyword construction).
    attnames = [field.attname for field in WorkItem._meta.concrete_fields]
    common = {
        "workflow_id": workflow.pk,
        "source": source,
        "source_principal": principal,
        "status": WorkItem.Status.RECEIVED,
        "created_at": now,
        "updated_at": now,
    }
    template = [common.get(name) for name in attnames]
    slot = {name: index for index, name in enumerate(attnames)}
    inserted: dict[str, WorkItem] = {}
    for pk, external_id in returned:
        values = template.copy()
        values[slot["id"]] = pk
        values[slot["external_id"]] = external_id
        values[slot["title"]], values[slot["payload"]] = by_external[external_id]
        item = WorkItem.from_db(connection.alias, attnames, values)
        item._state.fields_cache["workflow"] = workflow
        inserted[external_id] = item
    return inserted

"""The review queues' hand-written statements: queue sizes and rows, the card, a
claim's upsert and take, the next claim, and a decided plan's lock.

The reviewer's keyboard loop (decide, then the next card) runs these on every key;
a profile showed the ORM's compile costing more than the statements (see
docs/PERFORMANCE.md). Each has a parity test against its ORM form
(``tests/architecture/test_sql_parity.py``). What a queue holds is defined once, on
the model (``Proposal.AWAITING_REVIEW`` and ``AWAITING_SAMPLE``); the conditions
below are built from it, with the status values written as constants so the
planner uses the partial queue index.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from agents.models import Escalation, Proposal, Run, Step, ToolDefinition, WorkItem
from governance import sqlkit
from governance.models import ToolGrant, Workflow
from reviews.models import Approval, Claim, Decision

PENDING = sqlkit.literal(Proposal.Status.PENDING)


def as_datetime(value: Any) -> datetime | None:
    """A timestamp from a raw row, aware. SQLite hands back text, or (for a plain
    column of a declared datetime type) a naive datetime in UTC."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else parse_datetime(str(value))
    if parsed is not None and timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


# --- What the queues hold ---------------------------------------------------------------


@cache
def queue_ranges() -> tuple[str, str]:
    """The two index ranges a reviewer's queue reads, as conditions on the proposal
    ``p``: awaiting review (the partial ``proposal_queue_idx``), then executed actions
    sampled for post-hoc review with no decision yet."""
    review = sqlkit.conditions("p", Proposal.AWAITING_REVIEW)
    no_decision = f"SELECT 1 FROM {sqlkit.table(Decision)} d WHERE d.proposal_id = p.id"  # noqa: S608 - names from the models
    sample = f"{sqlkit.conditions('p', Proposal.AWAITING_SAMPLE)} AND NOT EXISTS ({no_decision})"
    return review, sample


# --- Queue sizes ---------------------------------------------------------------------------


@cache
def _oldest_pending_sql() -> str:
    """A loose index scan: one probe per distinct priority, each a single step on
    ``proposal_queue_idx`` (workflow, -priority, created_at)."""
    table = sqlkit.table(Proposal)
    return f"""
WITH RECURSIVE prio(p) AS (
    SELECT MAX(priority) FROM {table} WHERE workflow_id = %s AND status = {PENDING}
    UNION ALL
    SELECT (SELECT MAX(priority) FROM {table}
            WHERE workflow_id = %s AND status = {PENDING} AND priority < prio.p)
    FROM prio WHERE prio.p IS NOT NULL
)
SELECT MIN((SELECT MIN(created_at) FROM {table}
            WHERE workflow_id = %s AND status = {PENDING} AND priority = prio.p))
FROM prio WHERE prio.p IS NOT NULL
"""  # noqa: S608 - names and status values from the model, values bound


def oldest_pending_at(workflow_id: int) -> datetime | None:
    """The oldest pending proposal of a workflow, read from the queue index: it costs
    the same for ten pending rows and for a million."""
    rows = sqlkit.fetch(_oldest_pending_sql(), [workflow_id] * 3)
    return as_datetime(rows[0][0]) if rows else None


@cache
def _queue_size_sql() -> str:
    proposal, escalation = sqlkit.table(Proposal), sqlkit.table(Escalation)
    review, _sample = queue_ranges()
    return f"""
WITH RECURSIVE prio(p) AS (
    SELECT MAX(priority) FROM {proposal} WHERE workflow_id = %s AND status = {PENDING}
    UNION ALL
    SELECT (SELECT MAX(priority) FROM {proposal}
            WHERE workflow_id = %s AND status = {PENDING} AND priority < prio.p)
    FROM prio WHERE prio.p IS NOT NULL
)
SELECT
    (SELECT COUNT(*) FROM (SELECT 1 FROM {proposal} p
        WHERE p.workflow_id = %s AND {review} LIMIT %s) pending),
    (SELECT COUNT(*) FROM (SELECT 1 FROM {escalation}
        WHERE workflow_id = %s AND status = %s LIMIT %s) escalations),
    (SELECT MIN((SELECT MIN(created_at) FROM {proposal}
        WHERE workflow_id = %s AND status = {PENDING} AND priority = prio.p))
     FROM prio WHERE prio.p IS NOT NULL),
    (SELECT MIN(created_at) FROM {escalation} WHERE workflow_id = %s AND status = %s)
"""  # noqa: S608 - names and status values from the models, values bound


def queue_size(workflow_id: int, *, cap: int) -> tuple[int, int, datetime | None, datetime | None]:
    """(pending awaiting review, open escalations, oldest pending, oldest escalation)
    for one workflow: every part an index range that stops at ``cap`` (or a loose
    index scan for the oldest)."""
    pk, is_open = workflow_id, Escalation.Status.OPEN
    ((pending, escalations, oldest_pending, oldest_escalation),) = sqlkit.fetch(
        _queue_size_sql(), [pk, pk, pk, cap, pk, is_open, cap, pk, pk, is_open]
    )
    return pending, escalations, as_datetime(oldest_pending), as_datetime(oldest_escalation)


@cache
def _queue_rows_sql(*, workflows: int, filters: str) -> str:
    """The head of each queue range of each workflow (``limit`` rows each), with the
    work item's title and who holds a claim: one statement, each part an index
    range scan that stops at the limit."""
    user = get_user_model()
    ctes, selects = [], []
    for n in range(workflows * 2):
        scope = queue_ranges()[n % 2]
        ctes.append(
            f"r{n} AS (SELECT p.id, p.workflow_id, w.name, w.slug, p.tool, p.risk_class, "  # noqa: S608 - names from the models
            "p.flagged_injection, p.status, p.priority, p.created_at, wi.title, wi.external_id, "
            f"u.{sqlkit.qn(user.USERNAME_FIELD)} FROM {sqlkit.table(Proposal)} p "
            f"JOIN {sqlkit.table(Workflow)} w ON w.id = p.workflow_id "
            f"JOIN {sqlkit.table(WorkItem)} wi ON wi.id = p.work_item_id "
            f"LEFT JOIN {sqlkit.table(Claim)} c ON c.proposal_id = p.id "
            f"LEFT JOIN {sqlkit.table(user)} u ON u.id = c.reviewer_id "
            f"WHERE p.workflow_id = %s AND {scope}{filters} "
            "ORDER BY p.priority DESC, p.created_at, p.id LIMIT %s)"
        )
        selects.append(f"SELECT * FROM r{n}")  # noqa: S608
    return f"WITH {', '.join(ctes)} {' UNION ALL '.join(selects)}"


def queue_rows_fetch(
    *, workflow_ids: list[int], filters_sql: str, filter_params: list[Any], limit: int
) -> list[tuple[Any, ...]]:
    params: list[Any] = []
    for workflow_id in workflow_ids:
        for _range in ("pending", "sample"):
            params += [workflow_id, *filter_params, limit]
    return sqlkit.fetch(_queue_rows_sql(workflows=len(workflow_ids), filters=filters_sql), params)


@cache
def _tool_names_sql(workflows: int) -> str:
    return (
        f"SELECT DISTINCT g.tool FROM {sqlkit.table(ToolGrant)} g "  # noqa: S608 - names from the model
        f"WHERE g.workflow_id IN ({', '.join(['%s'] * workflows)})"
    )


def tool_names(workflow_ids: list[int]) -> list[str]:
    """Tools the filter offers: the workflows' grants (cheap), not a scan of the queue."""
    if not workflow_ids:
        return []
    return sorted(row[0] for row in sqlkit.fetch(_tool_names_sql(len(workflow_ids)), workflow_ids))


# --- Grants and the card ----------------------------------------------------------------


# Select-list part and join that read, with each proposal row ``p``, its tool's grant
# (and whether a schema-registered tool has that name, so the registry is asked only
# when it can answer something: a built-in tool needs no query at all).
GRANT_WIDTH = 3


@cache
def grant_sql() -> tuple[str, str]:
    definition = sqlkit.table(ToolDefinition)
    columns = (
        "g.enabled, g.autonomy_level, EXISTS (SELECT 1 FROM "  # noqa: S608 - names from the models
        f"{definition} d WHERE d.workflow_id = p.workflow_id AND d.name = p.tool)"
    )
    join = (
        f"LEFT JOIN {sqlkit.table(ToolGrant)} g"
        " ON g.workflow_id = p.workflow_id AND g.tool = p.tool"
    )
    return columns, join


@cache
def _grant_sql_one() -> str:
    columns, join = grant_sql()
    # The grant of one (workflow, tool) pair, shaped like a proposal row: one row
    # always, with NULLs when the workflow holds no grant.
    return (
        f"SELECT {columns} FROM (SELECT CAST(%s AS bigint) AS workflow_id, "  # noqa: S608
        f"CAST(%s AS varchar(100)) AS tool) p {join}"
    )


def grant_row(*, workflow_id: int, tool: str) -> tuple[Any, ...]:
    """The grant columns (``grant_sql``) of one (workflow, tool) pair."""
    [row] = sqlkit.fetch(_grant_sql_one(), [workflow_id, tool])
    return row


@cache
def _run_shown() -> tuple[str, ...]:
    """What the card reads of a run: everything but the agent's state (large JSON)."""
    return tuple(f.attname for f in Run._meta.concrete_fields if f.attname != "state")


@cache
def _card_sql(*, with_workflow: bool) -> str:
    """The plan (in order) of the card's proposal, each row with its work item, run,
    grant and, unless the caller has it already, workflow."""
    proposal = sqlkit.table(Proposal)
    grant_columns, grant_join = grant_sql()
    select = [
        sqlkit.columns(Proposal, "p"),
        sqlkit.columns(WorkItem, "wi"),
        sqlkit.columns(Run, "r", _run_shown()),
        grant_columns,
    ]
    joins = [
        f"JOIN {sqlkit.table(WorkItem)} wi ON wi.id = p.work_item_id",
        f"JOIN {sqlkit.table(Run)} r ON r.id = p.run_id",
        grant_join,
    ]
    if with_workflow:
        select.append(sqlkit.columns(Workflow, "w"))
        joins.append(f"JOIN {sqlkit.table(Workflow)} w ON w.id = p.workflow_id")
    return (
        f"SELECT {', '.join(select)} FROM {proposal} p {' '.join(joins)} "  # noqa: S608 - names from the models
        f"WHERE p.run_id = (SELECT q.run_id FROM {proposal} q WHERE q.id = %s) "
        "ORDER BY p.sequence"
    )


@cache
def _steps_sql() -> str:
    return (
        f"SELECT {sqlkit.columns(Step, 's')} FROM {sqlkit.table(Step)} s "  # noqa: S608 - names from the model
        f"WHERE s.run_id = %s ORDER BY s.{sqlkit.qn('index')}"
    )


def run_shown() -> tuple[str, ...]:
    return _run_shown()


def card_rows(*, proposal_id: int, with_workflow: bool) -> list[tuple[Any, ...]]:
    return sqlkit.fetch(_card_sql(with_workflow=with_workflow), [proposal_id])


def steps_of(run_id: int) -> list[Step]:
    return [sqlkit.build(Step, row) for row in sqlkit.fetch(_steps_sql(), [run_id])]


# --- Claims and decisions ---------------------------------------------------------------


def claim_upsert(
    *, proposal_id: int, reviewer_id: int, now: datetime, expires: datetime
) -> Claim | None:
    """Insert a claim, or take over an expired one, in one statement. None if
    another reviewer holds a live claim on the proposal."""
    table = sqlkit.table(Claim)
    token = uuid.uuid4()
    token_db = Claim._meta.get_field("token").get_db_prep_value(token, connection)
    rows = sqlkit.fetch(
        f"INSERT INTO {table} (proposal_id, reviewer_id, token, claimed_at, expires_at) "  # noqa: S608 - names from the model, values bound
        "VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (proposal_id) DO UPDATE SET reviewer_id = excluded.reviewer_id, "
        "token = excluded.token, claimed_at = excluded.claimed_at, "
        f"expires_at = excluded.expires_at WHERE {table}.expires_at <= excluded.claimed_at "
        "RETURNING id",
        [proposal_id, reviewer_id, token_db, now, expires],
    )
    if not rows:
        return None
    return Claim(
        pk=rows[0][0],
        proposal_id=proposal_id,
        reviewer_id=reviewer_id,
        token=token,
        claimed_at=now,
        expires_at=expires,
    )


@cache
def claim_next_sql(*, workflows: int, filters: str, skip: int, held: bool) -> str:
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
    proposal, claim = sqlkit.table(Proposal), sqlkit.table(Claim)
    approval = sqlkit.table(Approval)
    pending, sample = queue_ranges()
    in_scope = ", ".join(["%s"] * workflows)
    ctes, selects = [], []
    claim_width = sqlkit.width(Claim)
    if held:
        ctes.append(
            f"held AS (SELECT {sqlkit.columns(Claim, 'c')} FROM {claim} c "  # noqa: S608 - names from the models
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
            f"{sqlkit.lock('FOR UPDATE OF p SKIP LOCKED')})"
        )
        selects.append(f"SELECT {nulls}, id, priority, created_at FROM h{n}")  # noqa: S608
    return f"WITH {', '.join(ctes)} {' UNION ALL '.join(selects)}"


@cache
def _lock_plan_sql(*, in_workflow: bool) -> str:
    """The plan of a proposal, each row with its tool's grant, locked in sequence order."""
    proposal = sqlkit.table(Proposal)
    grant_columns, grant_join = grant_sql()
    in_scope = " AND q.workflow_id = %s" if in_workflow else ""
    return (
        f"SELECT {sqlkit.columns(Proposal, 'p')}, {grant_columns} FROM {proposal} p {grant_join} "  # noqa: S608 - names from the models
        f"WHERE p.run_id = (SELECT q.run_id FROM {proposal} q WHERE q.id = %s{in_scope}) "
        f"ORDER BY p.sequence{sqlkit.lock('FOR UPDATE OF p')}"
    )


def plan_locked(*, proposal_id: int, workflow_id: int | None) -> list[tuple[Any, ...]]:
    """The plan of a proposal (in ``workflow_id`` when given), each row with its tool's
    grant, locked in sequence order."""
    params: list[Any] = [proposal_id] + ([workflow_id] if workflow_id is not None else [])
    return sqlkit.fetch(_lock_plan_sql(in_workflow=workflow_id is not None), params)


@cache
def _take_claim_sql() -> str:
    claim = sqlkit.table(Claim)
    return (
        f"DELETE FROM {claim} WHERE proposal_id = %s AND reviewer_id = %s AND token = %s "  # noqa: S608 - names from the model
        f"RETURNING {sqlkit.columns(Claim, Claim._meta.db_table)}"
    )


def claim_take(*, proposal_id: int, reviewer_id: int, token: uuid.UUID) -> Claim | None:
    """Delete the reviewer's claim if it is theirs with this token, and return it."""
    token_db = Claim._meta.get_field("token").get_db_prep_value(token, connection)
    rows = sqlkit.fetch(_take_claim_sql(), [proposal_id, reviewer_id, token_db])
    return sqlkit.build(Claim, rows[0]) if rows else None


# --- Decisions are append-only -----------------------------------------------------------


@contextmanager
def decisions_backdatable() -> Iterator[None]:
    """Inside this block (and a transaction), a decision's ``created_at``, and nothing
    else of it, may be moved: the one UPDATE the database lets through (reviews'
    migration 0004). For synthetic history only: the demo's seed and tests that
    place evidence in time."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('tenure.backdate_decisions', 'on', true)")
        try:
            yield
        finally:
            cursor.execute("SELECT set_config('tenure.backdate_decisions', 'off', true)")

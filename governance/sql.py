"""Governance's hand-written statements: the reads every run, execution and request
makes of a workflow (its pause flag, its grants, a user's permissions on it, an API
token's scope) and the audit seal.

Each is here because a profile showed the ORM's compile costing more than the
statement (0.3-1 ms of CPU each, on every request or step); each has a parity test
against its ORM form (``tests/architecture/test_sql_parity.py``). Built with
``governance.sqlkit``: names from the models, values bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from guardian.models import GroupObjectPermission, UserObjectPermission

from governance import sqlkit
from governance.models import ApiToken, AuditChain, AuditEvent, ToolGrant, Workflow

# --- Workflows and grants ------------------------------------------------------------


def workflow_state(workflow_id: int) -> tuple[bool, str]:
    """(paused, autonomy level), read under FOR SHARE (PostgreSQL): a pause that is
    committing is waited for, never read around. The kill switch's check."""
    ((paused, level),) = sqlkit.fetch(
        f"SELECT paused, autonomy_level FROM {sqlkit.table(Workflow)}"  # noqa: S608 - names from the model, values bound
        f" WHERE id = %s{sqlkit.lock('FOR SHARE')}",
        [workflow_id],
    )
    return bool(paused), level


def workflow_paused(workflow_id: int, *, share_lock: bool = True) -> bool:
    """The pause flag. With ``share_lock`` it is read under FOR SHARE (PostgreSQL): the
    pause holds the row FOR NO KEY UPDATE, which conflicts, so an execution either
    commits its start before the pause commits or sees the pause."""
    lock = sqlkit.lock("FOR SHARE") if share_lock else ""
    rows = sqlkit.fetch(
        f"SELECT paused FROM {sqlkit.table(Workflow)} WHERE id = %s{lock}",  # noqa: S608 - names from the model, values bound
        [workflow_id],
    )
    return bool(rows and rows[0][0])


def grants_of(workflow_id: int) -> dict[str, ToolGrant]:
    """Every grant of the workflow, by tool (a run reads them once, at its start)."""
    rows = sqlkit.fetch(
        f"SELECT {sqlkit.columns(ToolGrant, 'g')} FROM {sqlkit.table(ToolGrant)} g"  # noqa: S608 - names from the model, values bound
        " WHERE g.workflow_id = %s",
        [workflow_id],
    )
    return {g.tool: g for g in (sqlkit.build(ToolGrant, row) for row in rows)}


def grant_of(workflow_id: int, tool: str, *, locked: bool) -> ToolGrant | None:
    """The workflow's grant of ``tool``, read fresh (optionally FOR UPDATE of its own
    row only: the workflow's row must not be locked, every insert referencing it
    would wait)."""
    rows = sqlkit.fetch(
        f"SELECT {sqlkit.columns(ToolGrant, 'g')} FROM {sqlkit.table(ToolGrant)} g"  # noqa: S608 - names from the model, values bound
        f" WHERE g.workflow_id = %s AND g.tool = %s{sqlkit.lock() if locked else ''}",
        [workflow_id, tool],
    )
    return sqlkit.build(ToolGrant, rows[0]) if rows else None


def grant_and_pause(workflow_id: int, tool: str) -> tuple[ToolGrant | None, bool]:
    """The grant of ``tool`` (not locked) and the pause flag read under FOR SHARE (as
    ``workflow_paused``), in one statement."""
    rows = sqlkit.fetch(
        f"SELECT w.paused, {sqlkit.columns(ToolGrant, 'g')} FROM {sqlkit.table(Workflow)} w"  # noqa: S608 - names from the models, values bound
        f" LEFT JOIN {sqlkit.table(ToolGrant)} g ON g.workflow_id = w.id AND g.tool = %s"
        f" WHERE w.id = %s{sqlkit.lock('FOR SHARE OF w')}",
        [tool, workflow_id],
    )
    if not rows:
        return None, False
    return sqlkit.build(ToolGrant, rows[0], 1), bool(rows[0][0])


# --- Permissions -------------------------------------------------------------------------


def _held_sql(*, alias: str) -> str:
    """SQL answering "does the user hold this permission on the workflow ``alias``?"
    from every source Django and guardian read: the user's and their groups'
    global permissions (ModelBackend), and the user's and their groups' object
    permissions on this workflow (guardian's ObjectPermissionChecker).

    Parameters, in order: content type id, codename, then the user id four times.
    """
    q = connection.ops.quote_name
    perm = q(Permission._meta.db_table)
    user_perms = q(get_user_model().user_permissions.through._meta.db_table)
    group_perms = q(Group.permissions.through._meta.db_table)
    user_groups = q(get_user_model().groups.through._meta.db_table)
    user_obj = q(UserObjectPermission._meta.db_table)
    group_obj = q(GroupObjectPermission._meta.db_table)
    object_pk = f"CAST({q(alias)}.{q('id')} AS TEXT)"
    return (
        f"EXISTS (SELECT 1 FROM {perm} p WHERE p.content_type_id = %s AND p.codename = %s AND ("  # noqa: S608 - names from the models, values bound
        f"EXISTS (SELECT 1 FROM {user_perms} up WHERE up.user_id = %s AND up.permission_id = p.id)"
        f" OR EXISTS (SELECT 1 FROM {group_perms} gp JOIN {user_groups} ug"
        " ON ug.group_id = gp.group_id WHERE ug.user_id = %s AND gp.permission_id = p.id)"
        f" OR EXISTS (SELECT 1 FROM {user_obj} uo WHERE uo.user_id = %s"
        " AND uo.permission_id = p.id AND uo.content_type_id = p.content_type_id"
        f" AND uo.object_pk = {object_pk})"
        f" OR EXISTS (SELECT 1 FROM {group_obj} go JOIN {user_groups} ug"
        " ON ug.group_id = go.group_id WHERE ug.user_id = %s AND go.permission_id = p.id"
        f" AND go.content_type_id = p.content_type_id AND go.object_pk = {object_pk})))"
    )


@cache
def _access_sql(asks: bool) -> str:
    held = f", {_held_sql(alias='w')}, {_held_sql(alias='w')}" if asks else ""
    return (
        f"SELECT {sqlkit.columns(Workflow, 'w')}{held}"  # noqa: S608 - names from the models, values bound
        f" FROM {sqlkit.table(Workflow)} w WHERE w.slug = %s"
    )


def workflow_with_permissions(
    *, slug: str, held_params: Sequence[Any] | None
) -> tuple[Workflow | None, bool, bool]:
    """The workflow by slug and, with ``held_params`` (for each of the two permissions
    asked: content type id, codename, then the user id four times), whether the user
    holds each of them. One statement: this runs on every console request."""
    asks = held_params is not None
    rows = sqlkit.fetch(_access_sql(asks), [*(held_params or ()), slug])
    if not rows:
        return None, False, False
    workflow = sqlkit.build(Workflow, rows[0])
    if not asks:
        return workflow, False, False
    return workflow, bool(rows[0][-2]), bool(rows[0][-1])


@cache
def _in_scope_sql() -> str:
    scope = ApiToken._meta.get_field("workflows")
    through = scope.remote_field.through
    return (
        f"SELECT {sqlkit.columns(Workflow, 'w')} FROM {sqlkit.table(Workflow)} w"  # noqa: S608 - names from the models, values bound
        f" WHERE w.slug = %s AND EXISTS (SELECT 1 FROM {sqlkit.table(through)} s"
        f" WHERE s.{sqlkit.qn(scope.m2m_reverse_name())} = w.id"
        f" AND s.{sqlkit.qn(scope.m2m_column_name())} = %s)"
    )


def workflow_in_token_scope(*, token_id: int, slug: str) -> Workflow | None:
    """The workflow ``slug`` if the API token is scoped to it (every authorised API
    request asks this), else None."""
    rows = sqlkit.fetch(_in_scope_sql(), [slug, token_id])
    return sqlkit.build(Workflow, rows[0]) if rows else None


# --- The audit seal ------------------------------------------------------------------------


@cache
def _audit_head_sql() -> str:
    # A seal commits without waiting for the WAL flush: lost in a server crash, the
    # events are unsealed again and the next seal (or the periodic job) redoes it.
    return (
        f"SELECT id, seq, head_hash, {sqlkit.relaxed_commit_expr()}"  # noqa: S608 - names from the model, values bound
        f" FROM {sqlkit.table(AuditChain)} WHERE key = %s{sqlkit.lock()}"
    )


def audit_head_locked(key: str) -> tuple[int, int, str] | None:
    """The chain's head (id, seq, hash), locked until the seal's transaction ends."""
    rows = sqlkit.fetch(_audit_head_sql(), [key])
    if not rows:
        return None
    head_id, seq, head_hash, _ = rows[0]
    return head_id, seq, head_hash


def audit_unsealed(key: str, limit: int) -> list[AuditEvent]:
    """The chain's unsealed events, in the order they were written."""
    rows = sqlkit.fetch(
        f"SELECT {sqlkit.columns(AuditEvent, 'e')} FROM {sqlkit.table(AuditEvent)} e"  # noqa: S608 - names from the model, values bound
        " WHERE e.chain = %s AND e.seq IS NULL ORDER BY e.id LIMIT %s",
        [key, limit],
    )
    return [sqlkit.build(AuditEvent, row) for row in rows]


def audit_seal_write(events: list[AuditEvent], *, head_id: int, seq: int, head_hash: str) -> None:
    """Write every event's seq and hashes in one statement (UPDATE ... FROM a VALUES
    list, which PostgreSQL and SQLite 3.33+ both run), then the chain's head."""
    if events:
        table = sqlkit.table(AuditEvent)
        rows = ", ".join(["(CAST(%s AS bigint), CAST(%s AS bigint), %s, %s, %s)"] * len(events))
        params = [v for e in events for v in (e.pk, e.seq, e.prev_hash, e.hash, e.key_id)]
        sqlkit.fetch_none(
            f"WITH v(id, seq, prev_hash, hash, key_id) AS (VALUES {rows})"  # noqa: S608 - names from the model, values bound
            f" UPDATE {table} SET seq = v.seq, prev_hash = v.prev_hash,"
            f" hash = v.hash, key_id = v.key_id FROM v WHERE {table}.id = v.id",
            params,
        )
    sqlkit.update(AuditChain, head_id, {"seq": seq, "head_hash": head_hash})


# --- Changes -----------------------------------------------------------------------------


def change_mark(*, autonomy: int | None = None, config: int | None = None) -> None:
    """Name, for the rest of the transaction, the change row being applied: the
    database lets the app's role change a level only with an AutonomyChange named
    here, and grants, caps, policy or thresholds only with a ConfigChange
    (governance migration 0004). Nothing on SQLite (the services hold the rule)."""
    if sqlkit.vendor() != "postgresql":
        return
    for name, value in (("tenure.autonomy_change", autonomy), ("tenure.config_change", config)):
        if value is not None:
            sqlkit.fetch("SELECT set_config(%s, %s, true)", [name, str(value)], prepare=False)

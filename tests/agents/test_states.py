"""agents.states: one writer per status column, with its allowed moves in one table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.db import connection, transaction

from agents import states
from agents.models import Execution, Proposal, Run, WorkItem
from tests.factories import ProposalFactory, RunFactory, WorkItemFactory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
APPS = ("governance", "agents", "reviews", "evidence", "demo", "console")
STATEFUL = ("WorkItem", "Proposal", "Run", "Execution")


def test_every_status_of_every_stateful_model_has_a_row_in_its_table():
    for model, table in states.TABLES.items():
        assert set(table) == set(model.Status.values), model.__name__
        for following in table.values():
            assert following <= set(model.Status.values)


def test_a_legal_move_changes_the_row_and_an_illegal_one_changes_nothing():
    item = WorkItemFactory(status=WorkItem.Status.AWAITING_REVIEW)
    assert states.work_item_move(item.pk, to=WorkItem.Status.EXECUTING) == 1
    item.refresh_from_db()
    assert item.status == WorkItem.Status.EXECUTING
    assert states.work_item_resolve(item.pk, succeeded=True) == 1
    # A resolved item is terminal: nothing moves it back to work.
    assert states.work_item_move(item.pk, to=WorkItem.Status.EXECUTING) == 0
    assert states.work_item_move(item.pk, to=WorkItem.Status.AWAITING_REVIEW) == 0
    item.refresh_from_db()
    assert (item.status, item.succeeded) == (WorkItem.Status.RESOLVED, True)


def test_a_move_to_the_status_a_row_has_is_a_no_op_unless_the_table_lists_it():
    item = WorkItemFactory(status=WorkItem.Status.EXECUTING)
    assert states.work_item_move(item.pk, to=WorkItem.Status.EXECUTING) == 0
    run = RunFactory(status=Run.Status.RUNNING, state={"lease": "a"})
    assert states.run_move(run.pk, to=Run.Status.RUNNING, lease="a") == 1  # a take-over


def test_a_decided_proposal_cannot_be_decided_again():
    proposal = ProposalFactory(status=Proposal.Status.PENDING)
    assert states.proposal_move(proposal.pk, to=Proposal.Status.REJECTED) == 1
    assert states.proposal_move(proposal.pk, to=Proposal.Status.ACCEPTED) == 0
    assert states.proposal_move(proposal.pk, to=Proposal.Status.EXECUTED) == 0
    proposal.refresh_from_db()
    assert proposal.status == Proposal.Status.REJECTED


def test_a_run_finishes_only_under_the_lease_that_claimed_it():
    run = RunFactory(status=Run.Status.RUNNING, state={"lease": "mine"})
    assert states.run_move(run.pk, to=Run.Status.PROPOSED, lease="someone-else") == 0
    assert states.run_move(run.pk, to=Run.Status.PROPOSED, lease="mine") == 1
    assert states.run_move(run.pk, to=Run.Status.ESCALATED, lease="mine") == 0


def test_no_status_leads_back_to_pending_or_queued():
    with pytest.raises(states.IllegalMove):
        states.sources(Proposal, Proposal.Status.PENDING)
    with pytest.raises(states.IllegalMove):
        states.sources(Run, Run.Status.QUEUED)
    assert states.sources(Execution, Execution.Status.PENDING) == (Execution.Status.RUNNING,)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="synchronous_commit is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_a_relaxed_move_relaxes_only_its_own_transaction():
    item = WorkItemFactory(status=WorkItem.Status.RECEIVED)
    with transaction.atomic():
        states.work_item_move(item.pk, to=WorkItem.Status.RUNNING, durable=False)
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "off"
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"


# --- the rest of the code writes no status ------------------------------------------------


def _sources() -> list[tuple[Path, str]]:
    out = []
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            out.append((path, path.read_text()))
    return out


STATUS_WRITES = [
    # An ORM update of a status.
    re.compile(r"\.update\([^)]*\bstatus\s*="),
    # A hand-written update of a stateful model naming its status.
    re.compile(r"sqlkit\.update\(\s*(" + "|".join(STATEFUL) + r")\b[^)]*\"status\""),
    # A save of the status field.
    re.compile(r"save\(update_fields=\[[^\]]*\"status\""),
]
ALLOWED = {"agents/states.py"}
# Models whose status other modules write: not one of the four (escalations, eval runs,
# governance's change requests) or a rollback of test data.
OTHER_MODELS = re.compile(r"(escalation|eval_run|change|EvalRun|ConfigChange|AutonomyChange)")


def test_only_agents_states_writes_the_status_of_items_proposals_runs_and_executions():
    offenders = []
    for path, text in _sources():
        rel = str(path.relative_to(ROOT))
        if rel in ALLOWED:
            continue
        for lineno, line in enumerate(text.splitlines(), start=1):
            if any(p.search(line) for p in STATUS_WRITES) and not OTHER_MODELS.search(line):
                offenders.append(f"{rel}:{lineno}: {line.strip()}")
    assert offenders == []


def test_only_agents_states_and_the_audit_seal_relax_durability():
    """The relaxed commit's one helper (``sqlkit.relaxed_commit_expr``, and the
    ``relaxed=`` of sqlkit's inserts built on it) is used by agents.states and the
    audit seal (governance.sql) only; everyone else asks agents.states to move a row."""
    users = set()
    for path, text in _sources():
        rel = str(path.relative_to(ROOT))
        if rel == "governance/sqlkit.py":
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Attribute) and node.attr == "relaxed_commit_expr":
                users.add(rel)
            if isinstance(node, ast.keyword) and node.arg == "relaxed":
                users.add(rel)
            if isinstance(node, ast.Constant) and "synchronous_commit" in str(node.value):
                users.add(rel)
    assert users == {"agents/states.py", "governance/sql.py"}


def test_only_an_undo_moves_a_decided_proposal_back_to_pending_and_reopens_its_item():
    proposal = ProposalFactory(status=Proposal.Status.REJECTED)
    item = WorkItemFactory(status=WorkItem.Status.RESOLVED, succeeded=False)
    # The ordinary moves still have no way back.
    assert states.proposal_move(proposal.pk, to=Proposal.Status.ACCEPTED) == 0
    assert states.work_item_move(item.pk, to=WorkItem.Status.AWAITING_REVIEW) == 0
    assert states.proposal_undo(proposal.pk) == 1
    assert states.work_item_reopen(item.pk) == 1
    proposal.refresh_from_db()
    item.refresh_from_db()
    assert (proposal.status, proposal.decided_at) == (Proposal.Status.PENDING, None)
    assert (item.status, item.succeeded, item.resolved_at) == (
        WorkItem.Status.AWAITING_REVIEW,
        None,
        None,
    )
    # An executed action, or a cancelled item, is never taken back.
    executed = ProposalFactory(status=Proposal.Status.EXECUTED)
    assert states.proposal_undo(executed.pk) == 0
    cancelled = WorkItemFactory(status=WorkItem.Status.CANCELLED)
    assert states.work_item_reopen(cancelled.pk) == 0

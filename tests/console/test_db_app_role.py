"""The app's database role (``manage.py db_app_role``) reads and writes rows and can do
nothing else: no truncate, no dropping or disabling a trigger, no altering a table."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from agents.services import work_item_create
from governance.audit import audit_seal
from tests.factories import WorkflowFactory

pytestmark = pytest.mark.django_db(transaction=True)
ROLE = "tenure_app_cmdtest"


def _as_app(statement: str, params: list | None = None) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {ROLE}")
        cursor.execute(statement, params or [])


def test_the_app_role_does_the_apps_work_and_nothing_more():
    out = io.StringIO()
    call_command("db_app_role", role=ROLE, password="", stdout=out)
    assert "rows only" in out.getvalue()
    workflow = WorkflowFactory(slug="role-test")
    # The app's everyday work, as that role: an item in, audited and sealed.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {ROLE}")
        item, created = work_item_create(
            workflow=workflow, external_id="R-1", payload={"text": "hi"}, source="api"
        )
    assert created
    audit_seal()
    for statement, message in [
        ("TRUNCATE console_auditevent", "permission denied"),
        ("TRUNCATE agents_workitem CASCADE", "permission denied"),
        ("ALTER TABLE console_auditevent DISABLE TRIGGER ALL", "must be owner"),
        ("DROP TRIGGER console_auditevent_append_only ON console_auditevent", "must be owner"),
        ("ALTER TABLE agents_workitem ADD COLUMN x int", "must be owner"),
        ("DELETE FROM console_auditevent", "append-only"),
    ]:
        with pytest.raises(DatabaseError, match=message):
            _as_app(statement)


def test_the_command_refuses_a_bad_name_and_the_owner_itself():
    with pytest.raises(CommandError, match="letters, digits"):
        call_command("db_app_role", role="x; DROP TABLE y", password="")
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        owner = cursor.fetchone()[0]
    with pytest.raises(CommandError, match="must not be the tables' owner"):
        call_command("db_app_role", role=owner, password="")


def test_the_app_role_cannot_backdate_or_rewrite_a_decision():
    from reviews.models import Decision
    from tests.factories import ProposalFactory, UserFactory

    call_command("db_app_role", role=ROLE, password="", stdout=io.StringIO())
    proposal = ProposalFactory()
    decision = Decision.objects.create(
        proposal=proposal, reviewer=UserFactory(username="dec"), verdict="accept",
        autonomy_level="shadow",
    )  # fmt: skip
    backdate = (
        "UPDATE reviews_decision SET created_at = created_at - interval '30 days'"
        f" WHERE id = {int(decision.pk)}"
        " AND set_config('tenure.backdate_decisions', 'on', true) = 'on'"
    )
    with pytest.raises(DatabaseError, match="append-only"):
        _as_app(backdate)
    # The owner (the demo's history seed) may move it back: the setting alone is not enough.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(backdate)
        assert cursor.rowcount == 1

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


def test_the_app_role_erases_a_subject_but_cannot_edit_the_data_policy():
    from evidence.privacy import subject_erase
    from governance import privacy
    from governance.models import AuditEvent

    call_command("db_app_role", role=ROLE, password="", stdout=io.StringIO())
    workflow = WorkflowFactory(
        slug="role-privacy", data_policy={"subject_fields": ["email"], "personal_fields": []}
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {ROLE}")
        item, _ = work_item_create(
            workflow=workflow,
            external_id="P-1",
            payload={"text": "hi", "email": "erin@example.com"},
            source="api",
        )
    # Erasure needs no update the database refuses (decisions, the audit log).
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {ROLE}")
        erasure = subject_erase(identifier="erin@example.com", actor="test", workflow=workflow)
    assert erasure.records["work_items"] == 1
    item.refresh_from_db()
    assert privacy.reveal(item.payload)["email"] == privacy.ERASED
    audit_seal()
    assert AuditEvent.objects.filter(action="privacy.subject.erased").exists()
    with pytest.raises(DatabaseError, match="data policy changes only through change control"):
        _as_app(
            "UPDATE console_workflow SET data_policy = '{}'::jsonb WHERE id = %s", [workflow.pk]
        )

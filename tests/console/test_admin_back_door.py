"""No back door to autonomy: every admin page, walked as a superuser, changes nothing
that widens what an agent may do or rewrites what happened; and the database refuses
the app's role a level, grant, cap, policy or threshold change without its change row."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from agents.models import Execution, Proposal
from governance.audit import audit_append
from governance.change_control import config_change_request
from governance.models import (
    AuditEvent,
    AutonomyChange,
    AutonomyLevel,
    ChatChannel,
    ChatIdentity,
    ToolGrant,
    Workflow,
)
from governance.services import autonomy_change_request
from reviews.models import Decision
from tests.factories import ProposalFactory, ToolGrantFactory, UserFactory, WorkflowFactory

APP_ROLE = "tenure_app_backdoor"
# Admin-managed, audited, and widening nothing an agent may do: which Tenure user a chat
# account is (it acts under that user's permissions), and a workflow's chat channel.
ADMIN_MANAGED = (ChatIdentity, ChatChannel)


@pytest.fixture
def world(db):
    workflow = WorkflowFactory(slug="guarded", autonomy_level=AutonomyLevel.SUPERVISED)
    grant = ToolGrantFactory(workflow=workflow, tool="create_refund", caps={"amount": "100"})
    proposal = ProposalFactory(workflow=workflow, run__work_item__workflow=workflow)
    reviewer = UserFactory(username="rev")
    Decision.objects.create(
        proposal=proposal,
        reviewer=reviewer,
        verdict="reject",
        reason="unsafe",
        autonomy_level="supervised",
    )
    Execution.objects.create(
        proposal=ProposalFactory(
            workflow=workflow, run__work_item__workflow=workflow, status="executed"
        ),
        idempotency_key="k-1",
        arguments={},
        arguments_hash="x",
        status="succeeded",
    )
    with transaction.atomic():
        audit_append(action="test.event", actor="system", workflow=workflow)
    return {"workflow": workflow, "grant": grant, "proposal": proposal}


@pytest.fixture
def superuser_client(client, db):
    user = UserFactory(username="root")
    user.is_superuser = user.is_staff = True
    user.save()
    client.force_login(user)
    return client


def _snapshot(model):
    return {
        obj.pk: {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields}
        for obj in model.objects.all()
    }


def _tampered(model, obj) -> dict[str, str]:
    """A POST body for ``obj``'s change form with every editable-looking value changed."""
    data = {}
    for field in model._meta.concrete_fields:
        value = getattr(obj, field.attname)
        if field.primary_key:
            continue
        if field.name == "autonomy_level":
            data[field.name] = AutonomyLevel.AUTONOMOUS
        elif isinstance(value, bool):
            data[field.name] = "" if value else "on"
        elif isinstance(value, (int, Decimal)) and not field.is_relation:
            data[field.name] = str(value + 1)
        elif isinstance(value, (dict, list)):
            data[field.name] = '{"amount": "99999", "two_approvers": null}'
        elif isinstance(value, str) and not field.choices:
            data[field.name] = value + "-tampered"
        elif field.choices:
            data[field.name] = field.choices[-1][0]
    return data


@pytest.mark.django_db
def test_every_admin_page_changes_nothing_that_matters(superuser_client, world):
    ours = {
        model: model_admin
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in ("governance", "agents", "reviews", "evidence", "demo")
    }
    before = {model: _snapshot(model) for model in ours}
    for model in ours:
        info = (model._meta.app_label, model._meta.model_name)
        changelist = superuser_client.get(reverse(f"admin:{info[0]}_{info[1]}_changelist"))
        assert changelist.status_code == 200, model
        add = superuser_client.get(reverse(f"admin:{info[0]}_{info[1]}_add"))
        if model._meta.app_label in ("governance", "agents", "reviews") and (
            model not in ADMIN_MANAGED
        ):
            assert add.status_code == 403, f"{model.__name__} can be added from the admin"
        for obj in model.objects.all()[:3]:
            url = reverse(f"admin:{info[0]}_{info[1]}_change", args=[obj.pk])
            assert superuser_client.get(url).status_code == 200
            superuser_client.post(url, _tampered(model, obj))
            delete = reverse(f"admin:{info[0]}_{info[1]}_delete", args=[obj.pk])
            superuser_client.post(delete, {"post": "yes"})
    for model, rows in before.items():
        after = _snapshot(model)
        if model is Workflow:
            # Only the name, the description and the owner may change (audited).
            for pk, row in rows.items():
                changed = {k for k in row if row[k] != after[pk][k]} - {"updated_at"}
                assert changed <= {"name", "description", "owner_id"}, changed
        elif model in ADMIN_MANAGED:
            continue  # tests/chat/test_chat_admin.py: their edits are audited
        elif model._meta.app_label in ("governance", "agents", "reviews"):
            assert after == rows, f"{model.__name__} changed through the admin"


@pytest.mark.django_db
def test_a_workflows_details_edited_in_the_admin_are_audited(superuser_client, world):
    workflow = world["workflow"]
    url = reverse("admin:governance_workflow_change", args=[workflow.pk])
    grants = workflow.grants.count()
    superuser_client.post(
        url,
        {
            "name": "Renamed",
            "description": "New words",
            "owner": "",
            "grants-TOTAL_FORMS": str(grants),
            "grants-INITIAL_FORMS": str(grants),
            "grants-MIN_NUM_FORMS": "0",
            "grants-MAX_NUM_FORMS": "1000",
        },
    )
    workflow.refresh_from_db()
    assert workflow.name == "Renamed"
    event = AuditEvent.objects.get(action="workflow.details_changed")
    assert event.data["changed"]["name"] == ["Guarded", "Renamed"]


# --- the database holds the rule for the app's role ------------------------------------------


def _as_app(fn):
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL ROLE {APP_ROLE}")
        return fn()


@pytest.fixture
def app_role(db):
    call_command("db_app_role", role=APP_ROLE, password="", stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_the_app_role_cannot_widen_autonomy_without_a_change_row(app_role):
    workflow = WorkflowFactory(slug="rule", autonomy_level=AutonomyLevel.SUPERVISED)
    grant = ToolGrantFactory(workflow=workflow, tool="create_refund", caps={"amount": "100"})
    attempts = {
        "level": lambda: ToolGrant.objects.filter(pk=grant.pk).update(autonomy_level="limited"),
        "caps": lambda: ToolGrant.objects.filter(pk=grant.pk).update(caps={"amount": "99999"}),
        "new grant above shadow": lambda: ToolGrant.objects.create(
            workflow=workflow, tool="x", autonomy_level="limited"
        ),
        "workflow level": lambda: Workflow.objects.filter(pk=workflow.pk).update(
            autonomy_level="autonomous"
        ),
        "policy": lambda: Workflow.objects.filter(pk=workflow.pk).update(
            policy={"two_approvers": None}
        ),
        "threshold": lambda: Workflow.objects.filter(pk=workflow.pk).update(
            gate_min_agreement=Decimal("0.100")
        ),
        "new workflow above shadow": lambda: Workflow.objects.create(
            slug="sneaky", name="Sneaky", autonomy_level="limited"
        ),
    }
    for name, attempt in attempts.items():
        with pytest.raises(DatabaseError, match="only through|starts in shadow"):
            _as_app(attempt)
        assert ToolGrant.objects.get(pk=grant.pk).autonomy_level == AutonomyLevel.SHADOW, name

    # The services name their change row, and the same changes go through.
    manager = UserFactory(username="mgr")
    _as_app(
        lambda: autonomy_change_request(
            workflow=workflow, to_level=AutonomyLevel.SHADOW, actor=manager, reason="drill"
        )
    )
    workflow.refresh_from_db()
    assert workflow.autonomy_level == AutonomyLevel.SHADOW
    assert AutonomyChange.objects.filter(workflow=workflow, kind="demotion").exists()
    _as_app(
        lambda: config_change_request(
            workflow=workflow, actor=manager, tool="create_refund", caps={"amount": "50"}
        )
    )
    assert ToolGrant.objects.get(pk=grant.pk).caps == {"amount": "50"}
    assert not Proposal.objects.exists()

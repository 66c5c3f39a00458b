from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from agents.evals import SuiteStatus
from evidence import gate as evidence_gate
from governance import services
from governance.audit import audit_append, audit_seal, audit_verify
from governance.models import AuditEvent, AutonomyChange, AutonomyLevel, ToolGrant
from tests.callbacks import task_callbacks
from tests.console.evidence import make_evidence
from tests.factories import ToolGrantFactory, WorkflowFactory, WorkItemFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def evidence_green(workflow, monkeypatch):
    """Enough agreeing decisions and a green regression suite to clear the gate."""
    monkeypatch.setattr(evidence_gate, "regression_status", lambda wf: SuiteStatus(True, "green"))
    make_evidence(workflow, accepted=60)


def test_promotion_goes_one_step_at_a_time(workflow, manager):
    with pytest.raises(ValidationError) as exc:
        services.autonomy_change_request(
            workflow=workflow, to_level=AutonomyLevel.LIMITED, actor=manager, reason="skip"
        )
    assert exc.value.messages == [
        services.ERR_SKIPS_A_STEP.format(frm="Shadow", next="Supervised", to="Limited")
    ]
    workflow.refresh_from_db()
    assert workflow.autonomy_level == AutonomyLevel.SHADOW
    assert not AutonomyChange.objects.exists(), "a refused change leaves no record"


def test_promotion_to_supervised_applies_with_one_manager(workflow, manager, evidence_green):
    change = services.autonomy_change_request(
        workflow=workflow, to_level=AutonomyLevel.SUPERVISED, actor=manager, reason="evidence ok"
    )
    workflow.refresh_from_db()
    assert workflow.autonomy_level == AutonomyLevel.SUPERVISED
    assert change.status == AutonomyChange.Status.APPLIED
    assert list(AuditEvent.objects.filter(workflow=workflow).values_list("action", flat=True)) == [
        "autonomy.promotion.requested",
        "autonomy.promotion.applied",
    ]


def test_promotion_to_limited_waits_for_a_second_manager(
    workflow, manager, second_manager, evidence_green
):
    workflow.autonomy_level = AutonomyLevel.SUPERVISED
    workflow.save()
    # Limited needs its dwell at supervised: decisions made there.
    make_evidence(workflow, accepted=workflow.gate_min_supervised_decisions)
    change = services.autonomy_change_request(
        workflow=workflow, to_level=AutonomyLevel.LIMITED, actor=manager, reason="gate passed"
    )
    workflow.refresh_from_db()
    assert change.status == AutonomyChange.Status.REQUESTED
    assert workflow.autonomy_level == AutonomyLevel.SUPERVISED

    with pytest.raises(ValidationError, match="second manager"):
        services.autonomy_change_approve(change=change, actor=manager)

    services.autonomy_change_approve(change=change, actor=second_manager)
    workflow.refresh_from_db()
    change.refresh_from_db()
    assert workflow.autonomy_level == AutonomyLevel.LIMITED
    assert change.approved_by == second_manager


def test_the_database_refuses_self_approval(workflow, manager):
    with pytest.raises(IntegrityError), transaction.atomic():
        AutonomyChange.objects.create(
            workflow=workflow,
            kind=AutonomyChange.Kind.PROMOTION,
            from_level=AutonomyLevel.SUPERVISED,
            to_level=AutonomyLevel.LIMITED,
            requested_by=manager,
            approved_by=manager,
        )


def test_demoting_a_workflow_caps_its_tool_grants(workflow, manager):
    workflow.autonomy_level = AutonomyLevel.LIMITED
    workflow.save()
    grant = ToolGrantFactory(workflow=workflow, autonomy_level=AutonomyLevel.LIMITED)
    services.autonomy_change_request(
        workflow=workflow, to_level=AutonomyLevel.SHADOW, actor=manager, reason="incident"
    )
    grant.refresh_from_db()
    assert grant.autonomy_level == AutonomyLevel.SHADOW


def test_a_tool_cannot_be_promoted_above_its_workflow(workflow, manager):
    grant = ToolGrantFactory(workflow=workflow, autonomy_level=AutonomyLevel.SHADOW)
    with pytest.raises(ValidationError) as exc:
        services.autonomy_change_request(
            workflow=workflow, grant=grant, to_level=AutonomyLevel.SUPERVISED, actor=manager
        )
    assert exc.value.messages == [services.ERR_GRANT_ABOVE_WORKFLOW.format(level="Shadow")]
    grant.refresh_from_db()
    assert grant.autonomy_level == AutonomyLevel.SHADOW


def test_effective_grant_level_never_exceeds_the_workflow(workflow):
    grant = ToolGrant(workflow=workflow, tool="x", autonomy_level=AutonomyLevel.AUTONOMOUS)
    assert grant.effective_level == AutonomyLevel.SHADOW


def test_unknown_level_is_refused_with_a_message(workflow, manager):
    with pytest.raises(ValidationError) as exc:
        services.autonomy_change_request(workflow=workflow, to_level="godmode", actor=manager)
    assert exc.value.messages == [services.ERR_UNKNOWN_LEVEL.format(level="godmode")]


def test_pause_and_resume_are_audited_and_refused_twice(workflow, ops):
    services.workflow_pause(workflow=workflow, actor=ops, reason="bad refunds")
    workflow.refresh_from_db()
    assert workflow.paused
    assert workflow.paused_reason == "bad refunds"
    with pytest.raises(ValidationError, match="already paused"):
        services.workflow_pause(workflow=workflow, actor=ops, reason="again")
    services.workflow_resume(workflow=workflow, actor=ops)
    workflow.refresh_from_db()
    assert not workflow.paused
    actions = list(AuditEvent.objects.values_list("action", "actor_label"))
    assert actions == [("workflow.paused", "user:otto"), ("workflow.resumed", "user:otto")]


def test_audit_chain_links_each_event_to_the_previous_one(workflow):
    first = audit_append(action="a", actor="system", workflow=workflow)
    second = audit_append(action="b", actor="system", workflow=workflow)
    other = audit_append(action="c", actor="system", workflow=WorkflowFactory())
    audit_seal()  # what runs after the transaction commits
    for event in (first, second, other):
        event.refresh_from_db()
    assert second.prev_hash == first.hash
    assert (first.seq, second.seq, other.seq) == (1, 2, 1), "one chain per workflow"
    assert audit_verify() == []


def test_the_database_refuses_to_rewrite_the_audit_log(workflow):
    audit_append(action="a", actor="system", workflow=workflow)
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        AuditEvent.objects.update(action="tampered")
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        AuditEvent.objects.all().delete()


def test_audit_verify_reports_the_first_broken_link(workflow):
    for action in ("a", "b", "c"):
        audit_append(action=action, actor="system", workflow=workflow)
    audit_seal()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")  # bypass the trigger
        cursor.execute("UPDATE console_auditevent SET action = 'x' WHERE seq = 2")
        cursor.execute("SET LOCAL session_replication_role = origin")
    broken = audit_verify()
    assert [(b.seq, b.problem) for b in broken] == [(2, "event content does not match its hash")]


def test_duplicate_external_id_is_refused_by_the_database(workflow):
    WorkItemFactory(workflow=workflow, external_id="T-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        WorkItemFactory(workflow=workflow, external_id="T-1")


def test_resume_restarts_items_that_arrived_while_paused(
    workflow, ops, django_capture_on_commit_callbacks
):
    services.workflow_pause(workflow=workflow, actor=ops, reason="incident")
    item = WorkItemFactory(workflow=workflow, status="received")
    with django_capture_on_commit_callbacks() as callbacks:
        services.workflow_resume(workflow=workflow, actor=ops)
    assert len(task_callbacks(callbacks)) >= 1, "the held item is dispatched again on commit"
    item.refresh_from_db()
    assert item.status == "received"

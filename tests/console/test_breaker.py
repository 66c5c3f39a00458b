from __future__ import annotations

import pytest
from django.utils import timezone

from agents.models import Step
from governance.audit import audit_verify
from governance.breaker import breaker_check, breaker_sweep, critical_reason
from governance.models import AuditEvent, AutonomyChange, AutonomyLevel
from reviews.models import Decision, RejectReason
from tests.console.evidence import make_evidence
from tests.factories import RunFactory, ToolGrantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def limited_tool(workflow):
    workflow.autonomy_level = AutonomyLevel.LIMITED
    workflow.save()
    return ToolGrantFactory(workflow=workflow, autonomy_level=AutonomyLevel.LIMITED)


def samples(workflow, *, accepted=0, rejected=0):
    # Written as samples (decisions are append-only: their kind cannot change later).
    return make_evidence(workflow, accepted=accepted, rejected=rejected, kind=Decision.Kind.SAMPLE)


def test_sampled_agreement_below_the_floor_demotes_the_tool(workflow, limited_tool):
    samples(workflow, accepted=6, rejected=4)  # 60% < 80% floor
    trip = breaker_check(workflow=workflow, tool=limited_tool.tool)
    assert trip.action == "demoted"
    assert "Sampled agreement 60%" in trip.why
    limited_tool.refresh_from_db()
    assert limited_tool.autonomy_level == AutonomyLevel.SUPERVISED
    change = AutonomyChange.objects.get()
    assert change.kind == AutonomyChange.Kind.DEMOTION
    assert change.requested_by is None
    assert AuditEvent.objects.filter(action="circuit_breaker.tripped").exists()
    assert audit_verify() == []


def test_healthy_samples_leave_the_tool_alone(workflow, limited_tool):
    samples(workflow, accepted=19, rejected=1)
    assert breaker_check(workflow=workflow, tool=limited_tool.tool) is None
    limited_tool.refresh_from_db()
    assert limited_tool.autonomy_level == AutonomyLevel.LIMITED


def test_too_few_samples_do_not_trip(workflow, limited_tool):
    samples(workflow, rejected=4)
    assert breaker_check(workflow=workflow, tool=limited_tool.tool) is None


def test_a_burned_error_budget_demotes(workflow, limited_tool):
    run = RunFactory(work_item__workflow=workflow)
    for i in range(20):
        Step.objects.create(
            run=run,
            index=i,
            kind=Step.Kind.TOOL_CALL,
            name=limited_tool.tool,
            error="timeout" if i < 3 else "",
            created_at=timezone.now(),
        )
    trip = breaker_check(workflow=workflow, tool=limited_tool.tool)  # 15% > 5%
    assert "Tool error rate 15.0%" in trip.why


def test_a_critical_rejection_demotes_at_once(workflow, limited_tool):
    decision = make_evidence(workflow, rejected=1, reject_reason=RejectReason.UNSAFE)[0]
    critical = critical_reason(
        reason_label=decision.get_reason_display(), proposal_id=decision.proposal_id
    )
    trip = breaker_check(workflow=workflow, tool=limited_tool.tool, critical=critical)
    assert trip.why.startswith("Critical rejection (Unsafe)")


def test_the_workflow_can_choose_to_pause_instead(workflow, limited_tool):
    workflow.policy = {"circuit_breaker": "pause"}
    workflow.save()
    samples(workflow, accepted=2, rejected=8)
    assert breaker_check(workflow=workflow, tool=limited_tool.tool).action == "paused"
    workflow.refresh_from_db()
    assert workflow.paused
    assert workflow.paused_reason.startswith("Circuit breaker:")


def test_supervised_tools_are_not_checked(workflow):
    grant = ToolGrantFactory(workflow=workflow, autonomy_level=AutonomyLevel.SUPERVISED)
    samples(workflow, rejected=10)
    assert breaker_check(workflow=workflow, tool=grant.tool) is None


def test_sweep_checks_every_tool_above_supervised(workflow, limited_tool):
    samples(workflow, accepted=1, rejected=9)
    assert [t.tool for t in breaker_sweep()] == [limited_tool.tool]
    assert breaker_sweep() == [], "once demoted, the sweep leaves it"

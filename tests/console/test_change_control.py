"""Change control: widening what the agent may do needs a green suite for the NEW
configuration and a second manager; narrowing applies at once; all is audited."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from agents.evals import ERR_NO_CHANGE_SUITE
from agents.models import EvalRun, EvalSuite
from governance import change_control as cc
from governance.audit import audit_verify
from governance.models import AuditEvent, AutonomyLevel, ConfigChange, ToolGrant, Workflow
from governance.permissions import Role, workflow_grant_role
from tests.agents.stub_openai import make_refund_workflow

pytestmark = pytest.mark.django_db


@pytest.fixture
def refunds():
    return make_refund_workflow(
        slug="cc-refunds", tools=("get_order", "create_refund", "search_knowledge")
    )


@pytest.fixture
def managers(roles, manager, second_manager, refunds):
    for user in (manager, second_manager):
        workflow_grant_role(user=user, workflow=refunds, role=Role.MANAGER)
    return manager, second_manager


@pytest.fixture
def suite(refunds):
    return EvalSuite.objects.create(workflow=refunds, name="regression")


@pytest.fixture
def replay(monkeypatch):
    """A stand-in for the replay: it records the configuration it saw, and fails
    when ``red`` says so for that configuration."""
    seen: list[dict] = []
    red: list = []

    def fake_run(*, suite, agent_version=None, actor="evals"):
        workflow = suite.workflow
        grants = {
            g.tool: dict(g.caps) for g in ToolGrant.objects.filter(workflow=workflow, enabled=True)
        }
        workflow.refresh_from_db()
        config = {"grants": grants, "allowlists": (workflow.policy or {}).get("allowlists")}
        seen.append(config)
        failing = any(rule(config) for rule in red)
        run = EvalRun.objects.create(
            suite=suite,
            agent_version="v-test",
            started_at=timezone.now(),
            finished_at=timezone.now(),
            cases=10,
            passed=6 if failing else 10,
            agreement=Decimal("0.6") if failing else Decimal("1"),
            threshold=Decimal("0.9"),
            status=EvalRun.Status.FAILED if failing else EvalRun.Status.PASSED,
        )
        return run

    monkeypatch.setattr("agents.evals.runs.eval_suite_run", fake_run)
    monkeypatch.setattr(
        "agents.evals.runs.run_summary", lambda run: f"{run.passed}/{run.cases} agree"
    )
    return seen, red


def test_adding_a_tool_runs_the_suite_with_the_tool_then_waits_for_a_second_manager(
    refunds, managers, suite, replay
):
    seen, _ = replay
    requester, approver = managers

    change = cc.config_change_request(
        workflow=refunds, actor=requester, tool="draft_customer_reply", reason="replies"
    )
    assert change.kind == ConfigChange.Kind.ADD_TOOL
    assert change.status == ConfigChange.Status.REQUESTED
    assert "draft_customer_reply" in seen[0]["grants"]  # the NEW configuration was replayed
    assert change.suite["passed"] is True
    # ... and rolled back: nothing is granted and no eval run stays behind.
    assert not ToolGrant.objects.filter(workflow=refunds, tool="draft_customer_reply").exists()
    assert not EvalRun.objects.exists()

    with pytest.raises(ValidationError) as refused:
        cc.config_change_approve(change=change, actor=requester)
    assert refused.value.messages == [cc.ERR_FOUR_EYES]

    change = cc.config_change_approve(change=change, actor=approver)
    assert change.status == ConfigChange.Status.APPLIED
    assert change.approved_by == approver
    grant = ToolGrant.objects.get(workflow=refunds, tool="draft_customer_reply")
    assert grant.autonomy_level == AutonomyLevel.SHADOW
    assert len(seen) == 2  # checked again at approval
    actions = list(
        AuditEvent.objects.filter(object_type="ConfigChange").values_list("action", flat=True)
    )
    assert actions == ["config.add_tool.requested", "config.add_tool.applied"]
    assert audit_verify() == []


def test_a_tool_added_without_a_green_suite_is_refused(refunds, managers, suite, replay):
    _, red = replay
    red.append(lambda config: "draft_customer_reply" in config["grants"])

    with pytest.raises(ValidationError) as refused:
        cc.config_change_request(
            workflow=refunds, actor=managers[0], tool="draft_customer_reply", reason="x"
        )
    assert refused.value.code == "suite_red"
    assert refused.value.messages[0].startswith(
        "The regression suite does not pass with the new configuration"
    )
    assert "regression: 6/10 agree" in refused.value.messages[0]
    assert not ConfigChange.objects.exists()
    assert not ToolGrant.objects.filter(tool="draft_customer_reply").exists()


def test_a_tool_cannot_be_added_to_a_workflow_without_a_suite(refunds, managers, replay):
    with pytest.raises(ValidationError) as refused:
        cc.config_change_request(
            workflow=refunds, actor=managers[0], tool="draft_customer_reply", reason="x"
        )
    assert refused.value.messages == [ERR_NO_CHANGE_SUITE.format(workflow=refunds.name)]


def test_the_suite_is_checked_again_when_the_change_is_approved(refunds, managers, suite, replay):
    _, red = replay
    ToolGrant.objects.filter(workflow=refunds, tool="create_refund").update(caps={"amount": "100"})
    change = cc.config_change_request(
        workflow=refunds, actor=managers[0], tool="create_refund", caps={"amount": "300"}
    )
    assert change.kind == ConfigChange.Kind.WIDEN_CAP
    red.append(lambda config: True)  # the suite turned red meanwhile
    with pytest.raises(ValidationError) as refused:
        cc.config_change_approve(change=change, actor=managers[1])
    assert refused.value.code == "suite_red"
    assert ToolGrant.objects.get(workflow=refunds, tool="create_refund").caps == {"amount": "100"}


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        ({"amount": "100"}, {"amount": "150"}, ConfigChange.Kind.WIDEN_CAP),
        ({"amount": "100"}, {}, ConfigChange.Kind.WIDEN_CAP),  # no cap is the widest
        ({"count": "20"}, {"count": "25"}, ConfigChange.Kind.WIDEN_CAP),
        ({"total": "500"}, {"total": "400"}, ConfigChange.Kind.NARROW_CAP),
        ({}, {"count": "5"}, ConfigChange.Kind.NARROW_CAP),
    ],
)
def test_caps_classify_as_widening_or_narrowing(
    refunds, managers, suite, replay, before, after, kind
):
    ToolGrant.objects.filter(workflow=refunds, tool="create_refund").update(caps=before)
    change = cc.config_change_request(
        workflow=refunds, actor=managers[0], tool="create_refund", caps=after
    )
    assert change.kind == kind
    assert change.before == {"tool": "create_refund", "caps": before}


def test_narrowing_a_cap_applies_at_once_and_is_audited(refunds, managers, replay):
    seen, _ = replay
    ToolGrant.objects.filter(workflow=refunds, tool="create_refund").update(
        caps={"amount": "100", "count": "20"}
    )
    # No suite needed, and none runs: this makes the agent safer.
    change = cc.config_change_request(
        workflow=refunds,
        actor=managers[0],
        tool="create_refund",
        caps={"amount": "50", "count": "20"},
        reason="incident",
    )
    assert change.kind == ConfigChange.Kind.NARROW_CAP
    assert change.status == ConfigChange.Status.APPLIED
    assert change.approved_by is None
    assert seen == []
    assert ToolGrant.objects.get(workflow=refunds, tool="create_refund").caps == {
        "amount": "50",
        "count": "20",
    }
    assert AuditEvent.objects.filter(action="config.narrow_cap.applied").exists()


def test_removing_a_tool_disables_it_at_once(refunds, managers):
    change = cc.config_change_request(
        workflow=refunds, actor=managers[0], tool="create_refund", remove=True
    )
    assert change.kind == ConfigChange.Kind.REMOVE_TOOL
    assert change.status == ConfigChange.Status.APPLIED
    assert not ToolGrant.objects.get(workflow=refunds, tool="create_refund").enabled


def test_widening_an_allowlist_is_gated_and_narrowing_is_not(refunds, managers, suite, replay):
    seen, _ = replay
    refunds.policy = {**refunds.policy, "allowlists": {"groups": ["vpn-users"]}}
    refunds.save(update_fields=["policy"])

    wider = cc.config_change_request(
        workflow=refunds, actor=managers[0], allowlists={"groups": ["vpn-users", "admins"]}
    )
    assert wider.kind == ConfigChange.Kind.WIDEN_ALLOWLIST
    assert wider.status == ConfigChange.Status.REQUESTED
    assert seen[-1]["allowlists"] == {"groups": ["admins", "vpn-users"]}

    lifted = cc.config_change_request(
        workflow=refunds, actor=managers[0], allowlists={"email_domains": ["x.io"]}
    )
    assert lifted.kind == ConfigChange.Kind.WIDEN_ALLOWLIST  # no groups list: any group
    none_left = cc.config_change_request(
        workflow=refunds,
        actor=managers[0],
        allowlists={"groups": ["vpn-users"], "email_domains": ["x.io"]},
    )
    assert none_left.kind == ConfigChange.Kind.NARROW_ALLOWLIST
    assert none_left.status == ConfigChange.Status.APPLIED


def test_an_argument_allowlist_is_kept_and_widening_it_is_gated(refunds, managers, suite, replay):
    pinned = {"arguments": {"send_payout": {"$.account": ["ACC-1"]}}}
    refunds.policy = {**refunds.policy, "allowlists": pinned}
    refunds.save(update_fields=["policy"])

    wider = cc.config_change_request(
        workflow=refunds,
        actor=managers[0],
        allowlists={"arguments": {"send_payout": {"$.account": ["ACC-1", "ACC-666"]}}},
    )
    assert wider.kind == ConfigChange.Kind.WIDEN_ALLOWLIST
    assert wider.status == ConfigChange.Status.REQUESTED
    dropped = cc.config_change_request(workflow=refunds, actor=managers[0], allowlists={})
    assert dropped.kind == ConfigChange.Kind.WIDEN_ALLOWLIST  # no list: any account

    narrower = cc.config_change_request(
        workflow=refunds,
        actor=managers[0],
        allowlists={"groups": ["vpn-users"], **pinned},
    )
    assert narrower.kind == ConfigChange.Kind.NARROW_ALLOWLIST
    refunds.refresh_from_db()
    assert refunds.policy["allowlists"] == {"groups": ["vpn-users"], **pinned}
    with pytest.raises(ValidationError):
        cc.config_change_request(
            workflow=refunds, actor=managers[0], allowlists={"arguments": ["ACC-1"]}
        )


def test_a_stale_request_cannot_be_applied(refunds, managers, suite, replay):
    ToolGrant.objects.filter(workflow=refunds, tool="create_refund").update(caps={"amount": "100"})
    change = cc.config_change_request(
        workflow=refunds, actor=managers[0], tool="create_refund", caps={"amount": "300"}
    )
    ToolGrant.objects.filter(workflow=refunds, tool="create_refund").update(caps={"amount": "1"})
    with pytest.raises(ValidationError) as refused:
        cc.config_change_approve(change=change, actor=managers[1])
    assert refused.value.messages == [cc.ERR_STALE]


def test_the_database_refuses_a_self_approved_change(refunds, managers):
    with pytest.raises(IntegrityError), transaction.atomic():
        ConfigChange.objects.create(
            workflow=refunds,
            kind=ConfigChange.Kind.ADD_TOOL,
            requested_by=managers[0],
            approved_by=managers[0],
        )


def test_the_changes_page_requests_and_approves(client_for, refunds, managers, suite, replay):
    requester, approver = managers
    url = reverse("workflow-changes", args=[refunds.slug])
    response = client_for(requester).post(
        url,
        {"action": "add", "tool": "draft_customer_reply", "amount": "", "reason": "replies"},
        follow=True,
    )
    assert "A second manager must approve it." in response.content.decode()
    change = ConfigChange.objects.get()

    page = client_for(approver).get(url).content.decode()
    assert "Add a tool" in page
    assert "draft_customer_reply" in page
    decide = reverse("config-change-decide", args=[refunds.slug, change.pk])
    response = client_for(approver).post(decide, {"decision": "approve"}, follow=True)
    assert "Applied: add a tool." in response.content.decode()
    assert ToolGrant.objects.filter(workflow=refunds, tool="draft_customer_reply").exists()


def test_reviewers_cannot_request_changes(client_for, refunds, reviewer):
    workflow_grant_role(user=reviewer, workflow=refunds, role=Role.REVIEWER)
    url = reverse("workflow-changes", args=[refunds.slug])
    assert client_for(reviewer).get(url).status_code == 200
    response = client_for(reviewer).post(url, {"action": "remove", "tool": "create_refund"})
    assert response.status_code == 403
    assert ToolGrant.objects.get(workflow=refunds, tool="create_refund").enabled


# --- settings: thresholds, budgets, policy, models, trusted fields ------------------------------


def test_tightening_a_threshold_applies_at_once_and_is_audited(refunds, managers):
    mona, _ = managers
    change = cc.config_change_request(
        workflow=refunds, actor=mona, settings={"gate_min_agreement": "0.950"}, reason="stricter"
    )
    assert change.kind == ConfigChange.Kind.NARROW_SETTINGS
    assert change.status == ConfigChange.Status.APPLIED
    assert Workflow.objects.get(pk=refunds.pk).gate_min_agreement == Decimal("0.950")
    event = AuditEvent.objects.get(action="config.narrow_settings.applied")
    assert event.data["before"] == {"settings": {"gate_min_agreement": "0.900"}}
    assert event.data["after"] == {"settings": {"gate_min_agreement": "0.950"}}


def test_loosening_waits_for_a_second_manager_and_skips_the_suite(refunds, managers, replay):
    mona, max_ = managers
    seen, _ = replay
    change = cc.config_change_request(
        workflow=refunds, actor=mona, settings={"gate_min_decisions": 10, "max_cost_usd": "9.99"}
    )
    assert change.kind == ConfigChange.Kind.WIDEN_SETTINGS
    assert change.status == ConfigChange.Status.REQUESTED
    assert Workflow.objects.get(pk=refunds.pk).gate_min_decisions == 50
    with pytest.raises(ValidationError, match="second manager"):
        cc.config_change_approve(change=change, actor=mona)
    cc.config_change_approve(change=change, actor=max_)
    workflow = Workflow.objects.get(pk=refunds.pk)
    assert (workflow.gate_min_decisions, workflow.max_cost_usd) == (10, Decimal("9.99"))
    assert seen == [], "thresholds and budgets do not change what the agent does"


def test_changing_the_policy_or_the_model_needs_green_suites(refunds, managers, replay, suite):
    mona, _ = managers
    seen, red = replay
    red.append(lambda config: True)
    with pytest.raises(ValidationError, match="does not pass"):
        cc.config_change_request(
            workflow=refunds, actor=mona, settings={"policy": {"two_approvers": None}}
        )
    assert seen, "the suites ran against the new policy"
    assert not ConfigChange.objects.filter(workflow=refunds).exists(), "a red suite keeps nothing"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"autonomy_level": "autonomous"}, "not a workflow setting"),
        ({"paused": False}, "not a workflow setting"),
        ({"gate_min_agreement": "1.5"}, "Gate min agreement"),
        ({"max_tool_calls": "lots"}, "Max tool calls"),
        ({"trusted_fields": "customer_id"}, "Trusted fields"),
        ({"gate_min_agreement": "0.900"}, "the same as the current one"),
    ],
)
def test_bad_settings_are_refused_with_their_reason(refunds, managers, settings, message):
    with pytest.raises(ValidationError, match=message):
        cc.config_change_request(workflow=refunds, actor=managers[0], settings=settings)


def test_trusting_a_new_payload_field_is_a_widening(refunds, managers):
    change = cc.config_change_request(
        workflow=refunds, actor=managers[0], settings={"trusted_fields": ["customer_id"]}
    )
    assert change.kind == ConfigChange.Kind.WIDEN_SETTINGS

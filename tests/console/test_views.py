from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from agents.evals import SuiteStatus
from evidence import gate as evidence_gate
from governance.models import AutonomyLevel
from governance.permissions import Role, workflow_grant_role
from tests.console.evidence import make_evidence
from tests.factories import ProposalFactory, UserFactory, WorkflowFactory

pytestmark = pytest.mark.django_db


def test_anonymous_users_are_sent_to_login(workflow):
    for url in (reverse("home"), reverse("workflow-detail", args=[workflow.slug])):
        response = Client().get(url)
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))


def test_login_page_renders_and_logs_in(reviewer):
    client = Client()
    assert client.get(reverse("login")).status_code == 200
    response = client.post(
        reverse("login"), {"username": "rita", "password": "correct-horse-battery"}
    )
    assert response.status_code == 302
    assert client.get(reverse("home")).status_code == 200


def test_wrong_password_shows_a_form_error():
    response = Client().post(reverse("login"), {"username": "nobody", "password": "x"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_reviewer_sees_only_granted_workflows(reviewer, workflow, other_workflow, client_for):
    response = client_for(reviewer).get(reverse("home"))
    assert response.status_code == 200
    names = [w.slug for w, _ in response.context["rows"]]
    assert names == ["refunds"]


def test_ops_and_admin_see_every_workflow(ops, admin_user, workflow, other_workflow, client_for):
    for user in (ops, admin_user):
        rows = client_for(user).get(reverse("home")).context["rows"]
        assert {w.slug for w, _ in rows} == {"refunds", "access"}


def test_home_counts_pending_proposals(reviewer, workflow, client_for):
    ProposalFactory.create_batch(3, run__work_item__workflow=workflow)
    rows = client_for(reviewer).get(reverse("home")).context["rows"]
    assert rows[0][1].pending == 3


def test_home_htmx_request_returns_only_the_table(reviewer, workflow, client_for):
    response = client_for(reviewer).get(reverse("home"), headers={"HX-Request": "true"})
    body = response.content.decode()
    assert 'id="workflow-table"' in body
    assert "<html" not in body
    assert response["Vary"] == "HX-Request" or "HX-Request" in response["Vary"]


def test_unknown_workflow_is_a_404_with_a_message(reviewer, client_for):
    response = client_for(reviewer).get(reverse("workflow-detail", args=["nope"]))
    assert response.status_code == 404
    assert "There is no workflow called “nope”." in response.content.decode()


def test_a_workflow_not_granted_looks_missing(reviewer, other_workflow, client_for):
    response = client_for(reviewer).get(reverse("workflow-detail", args=[other_workflow.slug]))
    assert response.status_code == 404


def test_reviewer_cannot_pause(reviewer, workflow, client_for):
    response = client_for(reviewer).post(
        reverse("workflow-pause", args=[workflow.slug]), {"reason": "x"}
    )
    assert response.status_code == 403
    workflow.refresh_from_db()
    assert not workflow.paused


def test_ops_pauses_from_the_workflow_page(ops, workflow, client_for):
    client = client_for(ops)
    response = client.post(
        reverse("workflow-pause", args=[workflow.slug]), {"reason": "refund spike"}, follow=True
    )
    assert response.status_code == 200
    workflow.refresh_from_db()
    assert workflow.paused
    assert "is paused" in response.content.decode()


def test_pause_without_a_reason_is_a_form_error_not_a_pause(ops, workflow, client_for):
    response = client_for(ops).post(
        reverse("workflow-pause", args=[workflow.slug]), {"reason": ""}, follow=True
    )
    assert "Say why you are pausing" in response.content.decode()
    workflow.refresh_from_db()
    assert not workflow.paused


def test_illegal_transition_is_a_message_not_a_500(manager, workflow, client_for):
    response = client_for(manager).post(
        reverse("workflow-change-level", args=[workflow.slug]),
        {"to_level": AutonomyLevel.AUTONOMOUS, "reason": "yolo"},
        follow=True,
    )
    assert response.status_code == 200
    assert "Promotion goes one step at a time" in response.content.decode()
    workflow.refresh_from_db()
    assert workflow.autonomy_level == AutonomyLevel.SHADOW


def test_unknown_level_in_the_form_is_a_form_error(manager, workflow, client_for):
    response = client_for(manager).post(
        reverse("workflow-change-level", args=[workflow.slug]),
        {"to_level": "godmode", "reason": "x"},
        follow=True,
    )
    assert "Select a valid choice" in response.content.decode()


def test_four_eyes_through_the_pages(manager, second_manager, workflow, client_for, monkeypatch):
    monkeypatch.setattr(evidence_gate, "regression_status", lambda wf: SuiteStatus(True, "green"))
    make_evidence(workflow, accepted=60)
    workflow.autonomy_level = AutonomyLevel.SUPERVISED
    workflow.save()
    client_for(manager).post(
        reverse("workflow-change-level", args=[workflow.slug]),
        {"to_level": AutonomyLevel.LIMITED, "reason": "gate passed"},
    )
    change = workflow.autonomy_changes.get()
    own = client_for(manager).post(
        reverse("autonomy-change-approve", args=[workflow.slug, change.pk]), follow=True
    )
    assert "A second manager must approve" in own.content.decode()
    client_for(second_manager).post(
        reverse("autonomy-change-approve", args=[workflow.slug, change.pk])
    )
    workflow.refresh_from_db()
    assert workflow.autonomy_level == AutonomyLevel.LIMITED


def test_get_on_a_post_endpoint_is_405(ops, workflow, client_for):
    response = client_for(ops).get(reverse("workflow-pause", args=[workflow.slug]))
    assert response.status_code == 405


def test_csrf_is_enforced_on_posts(ops, workflow):
    client = Client(enforce_csrf_checks=True)
    client.force_login(ops)
    response = client.post(reverse("workflow-pause", args=[workflow.slug]), {"reason": "x"})
    assert response.status_code == 403


def test_pages_carry_a_content_security_policy(reviewer, client_for):
    response = client_for(reviewer).get(reverse("home"))
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp


def test_manager_granted_one_workflow_cannot_manage_another(roles, workflow, client_for):
    other = WorkflowFactory(slug="crm")
    user = UserFactory(username="mo")
    user.groups.add(roles[Role.MANAGER])
    workflow_grant_role(user=user, workflow=workflow, role=Role.MANAGER)
    response = client_for(user).post(
        reverse("workflow-change-level", args=[other.slug]),
        {"to_level": AutonomyLevel.SUPERVISED, "reason": "x"},
    )
    assert response.status_code == 404


def test_ops_pauses_every_workflow_at_once(ops, workflow, other_workflow, client_for):
    response = client_for(ops).post(
        reverse("workflow-pause-all"), {"reason": "incident 42"}, follow=True
    )
    assert "Paused 2 workflow(s)" in response.content.decode()
    workflow.refresh_from_db()
    other_workflow.refresh_from_db()
    assert workflow.paused
    assert other_workflow.paused


def test_a_manager_cannot_pause_everything(manager, workflow, client_for):
    response = client_for(manager).post(reverse("workflow-pause-all"), {"reason": "x"})
    assert response.status_code == 403
    workflow.refresh_from_db()
    assert not workflow.paused


def test_workflow_page_names_its_accountable_owner(manager, workflow, client_for):
    workflow.owner = manager
    workflow.save()
    body = client_for(manager).get(reverse("workflow-detail", args=[workflow.slug])).content
    assert b"Accountable owner: <strong>mona</strong>" in body


def test_the_workflow_page_shows_the_caps_that_apply_and_todays_use(manager, workflow, client_for):
    from governance.models import ToolGrant

    workflow.policy = {
        "caps": {"create_refund": {"amount": 200}, "merge_contacts": {"records": 3}},
        "allowlists": {"email_domains": ["example.com"], "groups": ["vpn-users"]},
    }
    workflow.save()
    ToolGrant.objects.create(
        workflow=workflow, tool="create_refund", caps={"amount": 150, "count": 5, "total": 400}
    )
    ToolGrant.objects.create(workflow=workflow, tool="merge_contacts")

    html = client_for(manager).get(reverse("workflow-detail", args=[workflow.slug])).content
    html = html.decode()
    assert "amount ≤ 150" in html, "the grant's cap is lower than the workflow's"
    assert "records ≤ 3" in html, "a workflow-level cap shows on a grant without caps"
    assert "0 of 5 actions, 0 of 400 total" in html
    assert "domains that may be emailed</strong> example.com" in html
    assert "groups that may be granted</strong> vpn-users" in html

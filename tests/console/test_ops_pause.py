"""Ops pause a workflow, or all of them, from /ops/ and land back on /ops/."""

from __future__ import annotations

import pytest
from django.urls import reverse

from governance.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_ops_sees_pause_controls_and_a_reviewer_does_not(client_for, ops, reviewer, workflow):
    html = client_for(ops).get(reverse("ops-overview")).content.decode()
    assert reverse("workflow-pause", args=[workflow.slug]) in html
    assert reverse("workflow-pause-all") in html
    html = client_for(reviewer).get(reverse("ops-overview")).content.decode()
    assert reverse("workflow-pause", args=[workflow.slug]) not in html
    assert reverse("workflow-pause-all") not in html


def test_pausing_from_ops_returns_to_ops_and_is_audited(client_for, ops, workflow):
    client = client_for(ops)
    response = client.post(
        reverse("workflow-pause", args=[workflow.slug]),
        {"reason": "Refund spike", "return_to": "ops"},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("ops-overview")
    workflow.refresh_from_db()
    assert workflow.paused
    assert AuditEvent.objects.filter(action="workflow.paused", workflow=workflow).exists()
    html = client.get(reverse("ops-overview")).content.decode()
    assert reverse("workflow-resume", args=[workflow.slug]) in html
    response = client.post(reverse("workflow-resume", args=[workflow.slug]), {"return_to": "ops"})
    assert response["Location"] == reverse("ops-overview")
    workflow.refresh_from_db()
    assert not workflow.paused


def test_pause_all_from_ops(client_for, ops, workflow, other_workflow):
    response = client_for(ops).post(
        reverse("workflow-pause-all"), {"reason": "Incident", "return_to": "ops"}
    )
    assert response["Location"] == reverse("ops-overview")
    workflow.refresh_from_db()
    other_workflow.refresh_from_db()
    assert workflow.paused
    assert other_workflow.paused


def test_return_to_takes_no_url(client_for, ops, workflow):
    response = client_for(ops).post(
        reverse("workflow-pause", args=[workflow.slug]),
        {"reason": "x", "return_to": "https://evil.example/"},
    )
    assert response["Location"] == reverse("workflow-detail", args=[workflow.slug])


def test_a_pause_without_a_reason_is_refused_back_on_ops(client_for, ops, workflow):
    response = client_for(ops).post(
        reverse("workflow-pause", args=[workflow.slug]), {"reason": "", "return_to": "ops"}
    )
    assert response["Location"] == reverse("ops-overview")
    workflow.refresh_from_db()
    assert not workflow.paused

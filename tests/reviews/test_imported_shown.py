"""Imported history is marked imported where a person reads the evidence."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from agents.models import Proposal
from reviews.history import HistoryPair, history_import
from reviews.reported import ReportedAction

pytestmark = pytest.mark.django_db

REFUND = {"order_number": "A-1001", "amount": "42.00", "reason": "Arrived broken"}


def test_the_explain_page_says_a_decision_came_from_imported_history(client_for, manager, workflow):
    pair = HistoryPair(
        external_id="H-1",
        occurred_at=datetime(2026, 2, 1, 10, tzinfo=UTC),
        proposed=(ReportedAction("create_refund", REFUND),),
        human=(ReportedAction("create_refund", REFUND),),
    )
    history_import(workflow=workflow, pairs=[pair], principal="system:test")
    proposal = Proposal.objects.get(work_item__external_id="H-1")
    response = client_for(manager).get(reverse("explain-proposal", args=[proposal.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "From <strong>imported history</strong>" in html
    assert "<dt>Who</dt><dd>imported history</dd>" in html
    assert "1 Feb 2026, 10:00" in html

"""The runbook explains every metric /metrics really exposes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse

from evidence.prometheus import render_metrics

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "RUNBOOK.md"


@pytest.mark.django_db
def test_every_exposed_metric_is_in_the_runbook(workflow):
    exposed = set(re.findall(r"^# TYPE (tenure_\w+) ", render_metrics().decode(), re.MULTILINE))
    assert len(exposed) >= 10
    documented = set(re.findall(r"`(tenure_\w+)`", RUNBOOK.read_text()))
    assert exposed <= documented, sorted(exposed - documented)
    assert documented <= exposed, sorted(documented - exposed)


def test_the_pages_the_runbook_sends_you_to_exist():
    assert reverse("explain-proposal", args=[1]) == "/explain/proposal/1/"
    assert reverse("evidence-pack", args=["refunds"]) == "/w/refunds/evidence-pack/"
    assert reverse("workflow-pause-all") == "/pause-all/"
    assert reverse("audit-verify") == "/audit/verify/"
    assert reverse("readyz") == "/readyz"

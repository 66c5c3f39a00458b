"""The evidence pack: a printable page and JSON for auditors and risk reviews."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from governance import services
from governance.models import AutonomyChange, AutonomyLevel
from reviews.models import Decision, RejectReason
from tests.console.factories import DecisionFactory
from tests.factories import ToolGrantFactory


@pytest.fixture
def history(workflow, manager, reviewer):
    grant = ToolGrantFactory(workflow=workflow, tool="create_refund", caps={"amount": 100})
    # The gate is another module's concern: record an applied promotion as it would be.
    AutonomyChange.objects.create(
        workflow=workflow,
        kind=AutonomyChange.Kind.PROMOTION,
        status=AutonomyChange.Status.APPLIED,
        from_level=AutonomyLevel.SHADOW,
        to_level=AutonomyLevel.SUPERVISED,
        requested_by=manager,
        reason="Shadow evidence is strong.",
        evidence={"decisions": 120, "wilson_low": 0.93, "cost_per_outcome": "0.41"},
        decided_at=timezone.now(),
    )
    workflow.autonomy_level = AutonomyLevel.SUPERVISED
    workflow.save()
    grant.autonomy_level = AutonomyLevel.SUPERVISED
    grant.save()
    services.autonomy_change_request(
        workflow=workflow,
        grant=grant,
        to_level=AutonomyLevel.SHADOW,
        actor=None,
        reason="Sampled agreement fell below the floor.",
        evidence={"sampled_agreement": 0.7},
    )
    services.workflow_pause(workflow=workflow, actor=manager, reason="Refund API misbehaving")
    services.workflow_resume(workflow=workflow, actor=manager, reason="Vendor fixed it")
    DecisionFactory(
        proposal__run__work_item__workflow=workflow,
        reviewer=reviewer,
        kind=Decision.Kind.SAMPLE,
        verdict=Decision.Verdict.ACCEPT,
    )
    DecisionFactory(
        proposal__run__work_item__workflow=workflow,
        reviewer=reviewer,
        kind=Decision.Kind.SAMPLE,
        verdict=Decision.Verdict.REJECT,
        reason=RejectReason.UNSAFE,
        reason_text="Refund to the wrong card.",
    )
    return workflow


def pack_url(slug: str = "refunds", query: str = "") -> str:
    return reverse("evidence-pack", args=[slug]) + (f"?{query}" if query else "")


def test_pack_json_holds_history_grants_samples_and_incidents(client_for, manager, history):
    response = client_for(manager).get(pack_url(query="format=json"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    pack = response.json()
    promotion, demotion = pack["autonomy_history"]
    assert (promotion["kind"], promotion["from"], promotion["to"]) == (
        "promotion",
        "shadow",
        "supervised",
    )
    assert promotion["evidence"] == {
        "decisions": 120,
        "wilson_low": 0.93,
        "cost_per_outcome": "0.41",
    }
    assert promotion["requested_by"] == "mona"
    assert demotion["requested_by"] == "circuit breaker"
    assert demotion["target"] == "create_refund"
    [grant] = pack["grants"]
    assert grant["caps"] == {"amount": 100}
    samples = pack["sampled_reviews"]
    assert (samples["total"], samples["accepted"], samples["rejected"]) == (2, 1, 1)
    assert samples["agreement"] == 0.5
    kinds = [incident["kind"] for incident in pack["incidents"]]
    assert sorted(kinds) == ["critical_rejection", "demotion", "pause"]
    by_kind = {incident["kind"]: incident for incident in pack["incidents"]}
    assert "Resumed by user:mona" in by_kind["pause"]["resolution"]
    assert "Vendor fixed it" in by_kind["pause"]["resolution"]
    assert "Refund API misbehaving" in by_kind["pause"]["summary"]
    assert "the circuit breaker" in by_kind["demotion"]["summary"]
    assert "no promotion since" in by_kind["demotion"]["resolution"]
    assert "already executed" in by_kind["critical_rejection"]["resolution"]


def test_pack_html_is_printable(client_for, manager, history):
    response = client_for(manager).get(pack_url())
    html = response.content.decode()
    assert response.status_code == 200
    assert "Evidence pack: Refunds" in html
    assert "css/evidence.css" in html
    # Frozen evidence reads as labelled fields, not a Python dict.
    assert '<dt>Wilson low</dt><dd><span class="num">0.93</span></dd>' in html
    assert "{&#x27;" not in html
    assert "amount ≤ 100" in html
    assert "Caps history is not versioned yet" in html
    assert "2 sampled: 1 accepted, 0 edited, 1 rejected" in html
    assert "Still paused." not in html
    assert "Refund to the wrong card." in html


def test_print_stylesheet_hides_the_chrome():
    from pathlib import Path

    css = (Path(__file__).resolve().parents[2] / "static/css/evidence.css").read_text()
    print_rules = css.split("@media print", 1)[1]
    assert ".topbar" in print_rules
    assert "display: none" in print_rules


def test_pack_still_paused_workflow(client_for, manager, workflow):
    services.workflow_pause(workflow=workflow, actor=manager, reason="Investigating")
    pack = client_for(manager).get(pack_url(query="format=json")).json()
    [incident] = pack["incidents"]
    assert incident["resolution"] == "Still paused."
    assert pack["workflow"]["paused"] is True


def test_bad_format_is_a_400(client_for, manager, workflow):
    response = client_for(manager).get(pack_url(query="format=xml"))
    assert response.status_code == 400
    assert "not an export format" in response.content.decode()


def test_pack_of_an_unshared_workflow_is_not_found(client_for, reviewer, other_workflow):
    assert client_for(reviewer).get(pack_url("access")).status_code == 404

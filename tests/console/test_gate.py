from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from agents.evals import SuiteStatus
from evidence import gate as evidence_gate
from governance import gate, services
from governance.models import AutonomyChange, AutonomyLevel
from reviews.models import RejectReason
from tests.console.evidence import make_evidence

pytestmark = pytest.mark.django_db


@pytest.fixture
def suite_green(monkeypatch):
    monkeypatch.setattr(
        evidence_gate, "regression_status", lambda workflow: SuiteStatus(True, "12/12 cases agree")
    )


def evaluate(workflow, to=AutonomyLevel.SUPERVISED, tool=""):
    return gate.gate_evaluate(
        workflow=workflow, tool=tool, from_level=workflow.autonomy_level, to_level=to
    )


def by_key(evidence):
    return {c.key: c for c in evidence.criteria}


def test_gate_passes_at_exactly_the_minimum_sample(workflow, suite_green):
    make_evidence(workflow, accepted=workflow.gate_min_decisions)
    evidence = evaluate(workflow)
    assert evidence.passed, evidence.failed
    assert by_key(evidence)["sample_size"].value == "50"


def test_gate_fails_one_decision_short_of_the_sample(workflow, suite_green):
    make_evidence(workflow, accepted=workflow.gate_min_decisions - 1)
    criteria = by_key(evaluate(workflow))
    assert not criteria["sample_size"].passed
    # 49/49 accepted still clears the agreement bound (49/52.84 = 92.7%): only the sample fails.
    assert criteria["agreement"].passed


def test_one_edit_in_fifty_pulls_the_wilson_bound_below_ninety_percent(workflow, suite_green):
    # 49/50: Wilson 95% lower bound = 0.8950, just under the 0.900 threshold.
    make_evidence(workflow, accepted=49, edited=1)
    criterion = by_key(evaluate(workflow))["agreement"]
    assert not criterion.passed
    assert criterion.value == "89.5%"


def test_cost_per_outcome_above_target_fails(workflow, suite_green):
    workflow.cost_target_usd = Decimal("0.20")
    workflow.save()
    # Each outcome costs $0.01 model + 20 s x $45/h = $0.26.
    make_evidence(workflow, accepted=60)
    criterion = by_key(evaluate(workflow))["cost"]
    assert not criterion.passed
    assert criterion.value == "$0.26"


def test_a_critical_rejection_in_the_last_k_blocks_promotion(workflow, suite_green):
    make_evidence(workflow, accepted=100)
    make_evidence(workflow, rejected=1, reject_reason=RejectReason.UNSAFE)
    criteria = by_key(evaluate(workflow))
    assert not criteria["critical"].passed
    assert criteria["critical"].value == "1"


def test_an_old_critical_rejection_outside_the_last_k_does_not_block(workflow, suite_green):
    make_evidence(workflow, rejected=1, reject_reason=RejectReason.UNSAFE)
    make_evidence(workflow, accepted=120)
    assert by_key(evaluate(workflow))["critical"].passed


def test_no_regression_suite_fails_the_gate(workflow):
    make_evidence(workflow, accepted=80)
    criterion = by_key(evaluate(workflow))["regression"]
    assert not criterion.passed
    assert criterion.value in {"not run", "red"}


def test_per_tool_gate_counts_only_that_tool(workflow, suite_green):
    make_evidence(workflow, accepted=60, tool="create_refund")
    make_evidence(workflow, rejected=30, tool="draft_customer_reply")
    assert evaluate(workflow, tool="create_refund").passed
    assert not evaluate(workflow, tool="draft_customer_reply").passed


def test_promotion_request_freezes_the_evidence(workflow, manager, suite_green):
    make_evidence(workflow, accepted=60)
    change = services.autonomy_change_request(
        workflow=workflow, to_level=AutonomyLevel.SUPERVISED, actor=manager, reason="ready"
    )
    frozen = change.evidence["gate"]
    assert frozen["passed"] is True
    assert {c["key"] for c in frozen["criteria"]} == {
        "sample_size",
        "agreement",
        "item_agreement",
        "coverage",
        "cost",
        "critical",
        "regression",
    }


def test_promotion_without_evidence_is_refused_with_the_reasons(workflow, manager, suite_green):
    with pytest.raises(ValidationError) as exc:
        services.autonomy_change_request(
            workflow=workflow, to_level=AutonomyLevel.SUPERVISED, actor=manager
        )
    assert "Reviewed decisions in the window is 0 (needs ≥ 50)" in exc.value.messages[0]
    assert not AutonomyChange.objects.exists()


def test_approval_rechecks_the_gate(workflow, manager, second_manager, suite_green):
    workflow.autonomy_level = AutonomyLevel.SUPERVISED
    workflow.save()
    make_evidence(workflow, accepted=60)
    change = services.autonomy_change_request(
        workflow=workflow, to_level=AutonomyLevel.LIMITED, actor=manager, reason="ready"
    )
    make_evidence(workflow, rejected=1, reject_reason=RejectReason.POLICY)
    with pytest.raises(ValidationError, match="no longer clears the gate"):
        services.autonomy_change_approve(change=change, actor=second_manager)
    workflow.refresh_from_db()
    assert workflow.autonomy_level == AutonomyLevel.SUPERVISED


def test_turning_a_workflow_on_needs_no_evidence(manager, roles):
    from tests.factories import WorkflowFactory

    workflow = WorkflowFactory(autonomy_level=AutonomyLevel.OFF)
    services.autonomy_change_request(
        workflow=workflow, to_level=AutonomyLevel.SHADOW, actor=manager
    )
    workflow.refresh_from_db()
    assert workflow.autonomy_level == AutonomyLevel.SHADOW


# --- The item-level criteria, coverage and the dwell (honest evidence) ---------------


def _missed(workflow, decisions, n):
    """The human also did something the agent never proposed on ``n`` of the items."""
    from reviews.models import HumanAction

    for decision in decisions[:n]:
        HumanAction.objects.create(
            work_item_id=decision.proposal.work_item_id,
            outcome=decision.proposal.work_item.outcome,
            workflow=workflow,
            tool="draft_customer_reply",
            arguments={"body": "sorry"},
            occurred_at=decision.created_at,
        )


def test_every_action_right_is_not_enough_when_the_plans_missed_steps(workflow, suite_green):
    """60 of 60 proposals accepted, but on 20 items the human also replied to the
    customer, which the agent never proposed: precision is perfect, the plans are not."""
    decisions = make_evidence(workflow, accepted=60)
    _missed(workflow, decisions, 20)
    criteria = by_key(evaluate(workflow))
    assert criteria["agreement"].passed
    assert not criteria["item_agreement"].passed
    assert criteria["item_agreement"].detail == "40 of 60 items right (0 where both did nothing)"


def test_a_rejection_where_the_human_did_nothing_agrees_at_item_level(workflow, suite_green):
    """The agent proposed one refund; the human rejected it and did nothing else: the
    action was extra (precision falls), the item did not agree either."""
    make_evidence(workflow, accepted=60, rejected=1)
    criterion = by_key(evaluate(workflow))["item_agreement"]
    assert criterion.detail == "60 of 61 items right (0 where both did nothing)"


def test_cancelled_proposals_count_against_coverage(workflow, suite_green):
    from agents.models import Proposal
    from tests.factories import ProposalFactory

    make_evidence(workflow, accepted=60)
    for _ in range(10):
        ProposalFactory(workflow=workflow, status=Proposal.Status.CANCELLED)
    criterion = by_key(evaluate(workflow))["coverage"]
    assert not criterion.passed
    assert criterion.value == "85.7%"  # 60 of 70
    assert "10 cancelled" in criterion.detail


def test_proposals_still_waiting_are_outside_coverage(workflow, suite_green):
    from tests.factories import ProposalFactory

    make_evidence(workflow, accepted=60)
    for _ in range(10):
        ProposalFactory(workflow=workflow)
    criterion = by_key(evaluate(workflow))["coverage"]
    assert criterion.passed
    assert criterion.value == "100.0%"
    assert "10 still waiting" in criterion.detail


def test_a_tool_needs_decisions_at_supervised_before_limited(workflow, suite_green):
    # Plenty of agreeing evidence, all of it from shadow mode (make_evidence decides
    # at the workflow's level of the moment).
    make_evidence(workflow, accepted=60)
    dwell = by_key(evaluate(workflow, to=AutonomyLevel.LIMITED, tool="create_refund"))
    assert not dwell["supervised_dwell"].passed
    assert dwell["supervised_dwell"].value == "0"
    # Decisions made while the tool was supervised clear it.
    workflow.autonomy_level = AutonomyLevel.SUPERVISED
    workflow.save()
    make_evidence(workflow, accepted=workflow.gate_min_supervised_decisions)
    evidence = evaluate(workflow, to=AutonomyLevel.LIMITED, tool="create_refund")
    assert by_key(evidence)["supervised_dwell"].value == str(workflow.gate_min_supervised_decisions)
    assert evidence.passed, evidence.failed
    # Another tool's supervised decisions do not count for this one.
    other = by_key(evaluate(workflow, to=AutonomyLevel.LIMITED, tool="draft_customer_reply"))
    assert other["supervised_dwell"].value == "0"
    # Supervised is not limited: no dwell asked.
    assert "supervised_dwell" not in by_key(evaluate(workflow, tool="create_refund"))


def test_imported_history_counts_toward_the_gate_only_when_the_workflow_says_so(
    workflow, suite_green
):
    from reviews.models import Decision

    make_evidence(workflow, accepted=60, kind=Decision.Kind.IMPORTED)
    criteria = by_key(evaluate(workflow))
    assert criteria["sample_size"].value == "0"
    assert not criteria["sample_size"].passed
    workflow.gate_counts_imported = True
    workflow.save()
    evidence = evaluate(workflow)
    assert by_key(evidence)["sample_size"].value == "60"
    assert evidence.passed, evidence.failed

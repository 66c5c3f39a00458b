from __future__ import annotations

from decimal import Decimal

import pytest

from evidence.backtest import ERR_BAD_CAP, backtest_run, caps_parse
from reviews.models import RejectReason
from tests.console.evidence import make_evidence
from tests.factories import ToolGrantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(workflow):
    ToolGrantFactory(workflow=workflow, tool="create_refund")
    make_evidence(workflow, accepted=1, amounts=["40.00"])
    make_evidence(workflow, rejected=1, amounts=["150.00"], reject_reason=RejectReason.UNSAFE)
    make_evidence(workflow, edited=1, amounts=["90.00"])
    make_evidence(workflow, accepted=1, amounts=["300.00"])


def test_only_actions_inside_the_cap_would_have_auto_executed(workflow, history):
    result = backtest_run(workflow=workflow, tool="create_refund", caps={"amount": Decimal(100)})
    assert result.decided == 4
    assert result.would_auto == 2  # 40 and 90
    assert (result.auto_accepted, result.auto_edited, result.auto_rejected) == (1, 1, 0)
    assert result.held_for_approval == 2


def test_a_wider_cap_shows_the_rejections_it_would_have_let_through(workflow, history):
    result = backtest_run(workflow=workflow, tool="create_refund", caps={"amount": Decimal(200)})
    assert result.would_auto == 3
    assert result.auto_rejected == 1
    assert result.auto_critical == 1
    assert result.auto_disagreement_rate == pytest.approx(2 / 3)
    assert len(result.disagreements) == 2


def test_the_daily_count_cap_holds_the_rest_of_the_day(workflow, history):
    caps = {"amount": Decimal(500), "daily_count": Decimal(1)}
    result = backtest_run(workflow=workflow, tool="create_refund", caps=caps)
    assert result.would_auto == 1
    assert result.held_by_daily_cap == 3


def test_the_daily_amount_cap_counts_value(workflow, history):
    caps = {"amount": Decimal(500), "daily_amount": Decimal(200)}
    result = backtest_run(workflow=workflow, tool="create_refund", caps=caps)
    # 40 fits, 150 would make 190 (fits), 90 would make 280 (held), 300 held.
    assert result.would_auto == 2
    assert result.held_by_daily_cap == 2


def test_caps_must_be_positive_numbers():
    with pytest.raises(ValueError, match="must be a positive number") as exc:
        caps_parse({"amount": "-5"})
    assert str(exc.value) == ERR_BAD_CAP.format(name="amount", value="-5")
    with pytest.raises(ValueError, match="positive number"):
        caps_parse({"daily_count": "lots"})
    assert caps_parse({"amount": "100", "records": ""}) == {"amount": Decimal("100")}


def test_unknown_tool_is_a_clear_error(workflow):
    with pytest.raises(ValueError, match="no tool called"):
        backtest_run(workflow=workflow, tool="launch_rockets", caps={})


def test_a_flagged_or_ungrounded_past_action_would_have_waited_for_a_human(workflow, history):
    from agents.models import Proposal

    # Of the two inside the cap, one carried an injection flag and one an amount that
    # came only from the customer's text: neither would have run on its own.
    inside = Proposal.objects.filter(workflow=workflow, arguments__amount__in=["40.00", "90.00"])
    first, second = inside.order_by("pk")
    Proposal.objects.filter(pk=first.pk).update(flagged_injection=True)
    typed = {
        "$.amount": {"role": "money", "value": "90.00", "source": "untrusted_text:payload.text"}
    }
    Proposal.objects.filter(pk=second.pk).update(provenance=typed)
    result = backtest_run(workflow=workflow, tool="create_refund", caps={"amount": Decimal(100)})
    assert result.would_auto == 0
    assert result.held_for_approval == 4

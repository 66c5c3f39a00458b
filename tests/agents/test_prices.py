"""What a run costs: every model call is charged from the price table (input, cached
input and output tokens), a model without a price is charged at the fallback price
and marked unpriced, or stops the run before it is called; never a silent zero."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agents.budgets import ERR_COST
from agents.models import Escalation, Run, Step
from agents.prices import ERR_UNPRICED, price_table
from agents.runner import run_work_item
from governance.change_control import model_price_set
from governance.models import AuditEvent, ConfigChange, ModelPrice, Workflow
from tests.agents.stub_openai import (  # noqa: F401 - fixtures
    make_item,
    make_refund_workflow,
    stub_openai_fixture,
)

pytestmark = pytest.mark.django_db

UNLISTED = "mystery-model-9"
MILLION = Decimal(1_000_000)


def on_model(workflow: Workflow, model: str) -> Workflow:
    Workflow.objects.filter(pk=workflow.pk).update(model_small=model, model_large=model)
    workflow.refresh_from_db()
    return workflow


def model_steps(run: Run) -> list[Step]:
    return list(run.steps.filter(kind=Step.Kind.MODEL_CALL).order_by("index"))


def test_a_50k_token_run_on_an_unpriced_model_costs_the_fallback_price_and_says_so(
    stub_openai, settings
):
    settings.TENURE_FALLBACK_PRICE = "3,1.5,3"
    workflow = on_model(make_refund_workflow(max_tokens=100_000), UNLISTED)
    run = run_work_item(work_item_id=make_item(workflow, "fifty_k").pk)

    run = Run.objects.get(pk=run.pk)
    assert run.status == Run.Status.PROPOSED
    assert run.tokens_in + run.tokens_out == 50_000
    assert run.cost_usd == Decimal("0.150000")  # 50,000 tokens at $3 per million
    assert run.unpriced
    steps = model_steps(run)
    assert [s.unpriced for s in steps] == [True, True]
    assert sum(s.cost_usd for s in steps) == run.cost_usd


def test_without_a_fallback_an_unpriced_model_is_never_called_and_the_run_escalates(
    stub_openai, settings
):
    settings.TENURE_FALLBACK_PRICE = ""
    workflow = on_model(make_refund_workflow(max_tokens=100_000), UNLISTED)
    run = run_work_item(work_item_id=make_item(workflow, "fifty_k").pk)

    assert run.status == Run.Status.ESCALATED
    assert run.stop_reason == Run.StopReason.UNPRICED_MODEL
    assert stub_openai.scenario_requests("fifty_k") == []  # stopped before spending
    assert model_steps(run) == []
    assert Run.objects.get(pk=run.pk).cost_usd == 0
    escalation = run.escalations.get()
    assert escalation.reason == Escalation.Reason.BUDGET
    assert escalation.detail == ERR_UNPRICED.format(model=UNLISTED)
    assert f"manage.py prices set {UNLISTED}" in escalation.detail
    assert escalation.packet["budget"]["tripped"] == f"model_price={UNLISTED}"


def test_the_cost_budget_holds_on_an_unpriced_model_at_the_fallback_price(stub_openai, settings):
    settings.TENURE_FALLBACK_PRICE = "3,1.5,3"
    workflow = on_model(
        make_refund_workflow(max_tokens=100_000, max_cost_usd=Decimal("0.05")), UNLISTED
    )
    run = run_work_item(work_item_id=make_item(workflow, "fifty_k").pk)

    # The first call (35,000 tokens) costs $0.105: over the $0.05 budget.
    assert run.stop_reason == Run.StopReason.BUDGET_COST
    assert run.escalations.get().detail == ERR_COST.format(limit=Decimal("0.0500"), used="0.105000")
    assert Run.objects.get(pk=run.pk).unpriced


def test_the_daily_budget_counts_the_same_cost(stub_openai, settings):
    settings.TENURE_FALLBACK_PRICE = "3,1.5,3"
    workflow = on_model(
        make_refund_workflow(max_tokens=100_000, daily_budget_usd=Decimal("0.10")), UNLISTED
    )
    run = run_work_item(work_item_id=make_item(workflow, "fifty_k").pk)

    assert run.stop_reason == Run.StopReason.BUDGET_DAILY
    assert Run.objects.get(pk=run.pk).cost_usd == Decimal("0.105000")


def test_cached_input_tokens_are_charged_at_the_cached_rate(stub_openai):
    run = run_work_item(work_item_id=make_item(make_refund_workflow(), "prompt_cached").pk)
    price = ModelPrice.objects.get(model="stub-small")

    first, second = model_steps(run)
    # Read from the real openai client's usage.prompt_tokens_details.cached_tokens.
    assert (first.tokens_in, first.tokens_cached, first.tokens_out) == (10_000, 8_000, 1_000)
    expected = (
        2_000 * price.input_per_mtok
        + 8_000 * price.cached_input_per_mtok
        + 1_000 * price.output_per_mtok
    ) / MILLION
    assert first.cost_usd == expected.quantize(Decimal("0.000001"))
    assert not first.unpriced
    run = Run.objects.get(pk=run.pk)
    assert run.tokens_cached == 8_000 + 9_000
    assert run.cost_usd == first.cost_usd + second.cost_usd
    assert not run.unpriced


def test_a_price_change_is_audited_and_charges_the_next_run(
    stub_openai, admin_user, django_capture_on_commit_callbacks
):
    workflow = make_refund_workflow()
    before = ModelPrice.objects.get(model="stub-small")
    first = run_work_item(work_item_id=make_item(workflow, "good", external_id="g-1").pk)
    # "good": three calls of 350 input and 40 output tokens, each rounded to the
    # micro-dollar the trace keeps (76.5 micro-dollars -> $0.000077).
    assert 350 * before.input_per_mtok + 40 * before.output_per_mtok == Decimal("76.5")
    assert first.cost_usd == 3 * Decimal("0.000077")
    assert first.cost_usd == sum(s.cost_usd for s in model_steps(first))

    with django_capture_on_commit_callbacks(execute=True):
        change = model_price_set(
            model="stub-small",
            input="1",
            cached_input="0.5",
            output="2",
            actor=admin_user,
            reason="New price list",
        )
    second = run_work_item(work_item_id=make_item(workflow, "good", external_id="g-2").pk)

    assert second.cost_usd == Decimal(3 * (350 * 1 + 40 * 2)) / MILLION
    assert change.kind == ConfigChange.Kind.SET_PRICE
    assert change.status == ConfigChange.Status.APPLIED
    assert change.workflow is None
    assert change.before == {
        "model": "stub-small",
        "input": str(before.input_per_mtok),
        "cached_input": str(before.cached_input_per_mtok),
        "output": str(before.output_per_mtok),
    }
    assert change.after == {
        "model": "stub-small",
        "input": "1.000000",
        "cached_input": "0.500000",
        "output": "2.000000",
    }
    event = AuditEvent.objects.get(action="config.set_price.applied")
    assert event.actor == admin_user
    assert event.data["after"]["input"] == "1.000000"


def test_another_process_reads_a_new_price_once_the_change_commits(
    admin_user, django_capture_on_commit_callbacks
):
    assert price_table().price_for("gpt-4o").input == Decimal("2.5")
    # A change committed elsewhere shows through the version in the shared cache.
    ModelPrice.objects.filter(model="gpt-4o").update(input_per_mtok=Decimal("9"))
    assert price_table().price_for("gpt-4o").input == Decimal("2.5")  # this copy holds
    with django_capture_on_commit_callbacks(execute=True):
        model_price_set(model="gpt-4o", input="3", cached_input="1", output="10", actor=admin_user)
    assert price_table().price_for("gpt-4o").input == Decimal("3")

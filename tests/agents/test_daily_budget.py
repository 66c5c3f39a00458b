"""The workflow's daily budget (``Workflow.daily_budget_usd``) across its runs."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from agents.budgets import start_of_today, workflow_spend_today
from agents.knowledge import SEARCH_CONFIG, search_vector
from agents.models import Escalation, KnowledgeDocument, Run, Step, WorkItem
from agents.runner import run_work_item
from tests.agents.stub_openai import (  # noqa: F401 - fixtures
    make_item,
    make_refund_workflow,
    stub_openai_env_fixture,
    stub_openai_fixture,
)

pytestmark = pytest.mark.django_db


def spent_earlier(workflow, cost: str, *, created_at=None) -> Run:
    """An earlier run of the workflow that spent ``cost`` (model) dollars."""
    item = WorkItem.objects.create(
        workflow=workflow,
        external_id=f"earlier-{WorkItem.objects.count() + 1}",
        payload={"text": "earlier"},
        source=WorkItem.Source.API,
        status=WorkItem.Status.RESOLVED,
    )
    run = Run.objects.create(
        work_item=item,
        status=Run.Status.PROPOSED,
        autonomy_level=workflow.autonomy_level,
        cost_usd=Decimal(cost),
    )
    if created_at is not None:
        Run.objects.filter(pk=run.pk).update(created_at=created_at)
    return run


def test_a_spent_daily_budget_stops_the_run_before_its_first_model_call(stub_openai):
    workflow = make_refund_workflow(daily_budget_usd=Decimal("0.05"))
    spent_earlier(workflow, "0.03")
    spent_earlier(workflow, "0.02")
    item = make_item(workflow, "good")

    run = run_work_item(work_item_id=item.pk)

    assert run.status == Run.Status.ESCALATED
    assert run.stop_reason == Run.StopReason.BUDGET_DAILY
    assert run.stop_reason in Run.BUDGET_REASONS
    assert stub_openai.requests == []  # no model call was made
    escalation = Escalation.objects.get(run=run)
    assert escalation.reason == Escalation.Reason.BUDGET
    assert "daily budget of $0.05" in escalation.detail
    assert escalation.packet["budget"]["tripped"] == "daily_budget_usd=0.05"
    item.refresh_from_db()
    assert item.status == WorkItem.Status.ESCALATED
    assert Step.objects.filter(run=run, kind=Step.Kind.BUDGET, name="budget_daily").exists()


def test_the_run_that_spends_the_last_of_the_budget_stops_before_its_next_call(stub_openai):
    workflow = make_refund_workflow(daily_budget_usd=Decimal("0.01"))
    # Just under the budget: the first model call (a few millionths of a dollar) goes
    # out, and pushes the day's spend over; the run stops before the second one.
    spent_earlier(workflow, "0.009999")
    run = run_work_item(work_item_id=make_item(workflow, "good").pk)

    assert run.stop_reason == Run.StopReason.BUDGET_DAILY
    assert len(stub_openai.requests) == 1
    assert run.cost_usd > 0  # the call it made is recorded, and counts tomorrow's... today
    assert workflow_spend_today(workflow=workflow) > Decimal("0.01")


def test_spend_before_today_and_other_workflows_spend_do_not_count(stub_openai):
    workflow = make_refund_workflow(daily_budget_usd=Decimal("0.05"))
    other = make_refund_workflow(slug="other-refunds", daily_budget_usd=Decimal("0.05"))
    spent_earlier(workflow, "5", created_at=start_of_today() - timedelta(minutes=1))
    spent_earlier(other, "5")

    run = run_work_item(work_item_id=make_item(workflow, "good").pk)

    assert run.status == Run.Status.PROPOSED
    assert run.state["budget"]["daily_budget_usd"] == "0.05"
    assert Decimal(run.state["budget"]["spent_today_usd"]) == run.cost_usd


def test_spend_today_counts_model_and_tool_cost_like_the_dashboard():
    workflow = make_refund_workflow()
    run = spent_earlier(workflow, "0.5")
    Run.objects.filter(pk=run.pk).update(tool_cost_usd=Decimal("0.25"))
    spent_earlier(workflow, "1")

    assert workflow_spend_today(workflow=workflow) == Decimal("1.75")
    assert workflow_spend_today(workflow=workflow, exclude_run_id=run.pk) == Decimal("1")
    assert start_of_today() <= timezone.now()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="GIN is PostgreSQL's")
def test_knowledge_search_uses_the_gin_index():
    workflow = make_refund_workflow()
    KnowledgeDocument.objects.create(
        workflow=workflow, slug="refunds", title="Refund policy", body="Refunds within 30 days."
    )
    from django.contrib.postgres.search import SearchQuery

    # Across workflows (no workflow_id btree to prefer): the planner must take the GIN
    # index for ``document @@ query`` when sequential scans are off.
    query = (
        KnowledgeDocument.objects.annotate(document=search_vector())
        .filter(document=SearchQuery("refund", search_type="websearch", config=SEARCH_CONFIG))
        .order_by()
    )
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "agents_knowledgedoc_search_gin" in plan, plan

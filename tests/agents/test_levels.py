"""A workflow's level reads as a ceiling next to the tools' real levels."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.levels import attach_level_summaries, level_summary
from governance.models import AutonomyLevel
from tests.factories import ToolGrantFactory, WorkflowFactory

pytestmark = pytest.mark.django_db


def _workflow(level=AutonomyLevel.LIMITED, **tools):
    workflow = WorkflowFactory(autonomy_level=level)
    for tool, tool_level in tools.items():
        ToolGrantFactory(workflow=workflow, tool=tool, autonomy_level=tool_level)
    return workflow


def test_a_limited_workflow_with_every_tool_at_shadow_says_nothing_runs_alone():
    # get_order and search_knowledge are read tools: they run at any level, not counted.
    workflow = _workflow(
        create_refund=AutonomyLevel.SHADOW,
        draft_customer_reply=AutonomyLevel.SHADOW,
        get_order=AutonomyLevel.SHADOW,
        search_knowledge=AutonomyLevel.SHADOW,
    )
    summary = level_summary(workflow)
    assert summary.text == "Ceiling: limited · 2 tools shadow"
    assert summary.runs_alone == []
    assert summary.reads == 2


def test_one_tool_per_level_is_named_and_the_ceiling_caps_it():
    workflow = _workflow(
        AutonomyLevel.SUPERVISED,
        create_refund=AutonomyLevel.LIMITED,  # above the ceiling: runs at supervised
        draft_customer_reply=AutonomyLevel.SHADOW,
    )
    assert level_summary(workflow).text == (
        "Ceiling: supervised · create_refund: supervised · draft_customer_reply: shadow"
    )


def test_what_runs_without_a_human_and_a_pause_stops_it():
    workflow = _workflow(
        create_refund=AutonomyLevel.LIMITED, draft_customer_reply=AutonomyLevel.SUPERVISED
    )
    summary = level_summary(workflow)
    assert summary.text.startswith("Ceiling: limited · create_refund: limited")
    assert summary.runs_alone == ["create_refund"]
    workflow.paused = True
    workflow._level_summary = None
    assert level_summary(workflow).runs_alone == []


def test_the_home_page_label_costs_the_same_queries_for_many_workflows():
    few = [_workflow(create_refund=AutonomyLevel.SHADOW) for _ in range(2)]
    many = few + [_workflow(create_refund=AutonomyLevel.SHADOW) for _ in range(6)]
    with CaptureQueriesContext(connection) as small:
        attach_level_summaries(few)
    with CaptureQueriesContext(connection) as large:
        attach_level_summaries(many)
    assert len(large.captured_queries) == len(small.captured_queries) == 2


def test_the_home_page_shows_the_ceiling_and_the_tools(client_for, manager, workflow):
    ToolGrantFactory(workflow=workflow, tool="create_refund", autonomy_level="shadow")
    workflow.autonomy_level = AutonomyLevel.LIMITED
    workflow.save(update_fields=["autonomy_level"])
    html = client_for(manager).get("/").content.decode()
    assert "Ceiling: limited" in html
    assert "create_refund: shadow" in html
    assert "Nothing executes without a human" in html

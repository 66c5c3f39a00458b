from __future__ import annotations

import pytest

from governance.permissions import Role, workflow_grant_role
from tests.factories import ToolGrantFactory, UserFactory
from tests.reviews.factories import fake_tool_for


@pytest.fixture(autouse=True)
def refund_tool(monkeypatch):
    """The review screens read tools through reviews.tools.tool_for: give them a known one."""
    monkeypatch.setattr("reviews.tools.tool_for", fake_tool_for)


@pytest.fixture(autouse=True)
def grants(workflow, other_workflow):
    """The queue's tools are granted (in shadow) on both test workflows."""
    return [
        ToolGrantFactory(workflow=w, tool=tool)
        for w in (workflow, other_workflow)
        for tool in ("create_refund", "send_message")
    ]


@pytest.fixture
def second_reviewer(roles, workflow):
    user = UserFactory(username="remy")
    user.groups.add(roles[Role.REVIEWER])
    workflow_grant_role(user=user, workflow=workflow, role=Role.REVIEWER)
    return user


@pytest.fixture
def outsider(roles, other_workflow):
    """A reviewer of another workflow only."""
    user = UserFactory(username="oscar")
    user.groups.add(roles[Role.REVIEWER])
    workflow_grant_role(user=user, workflow=other_workflow, role=Role.REVIEWER)
    return user

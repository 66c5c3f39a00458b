"""Downloading every reviewer's decisions is a permission of its own (export_workflow):
managers and admins hold it by default, reviewers, ops and viewers do not."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.urls import reverse
from guardian.shortcuts import assign_perm, get_perms

from governance.api.tokens import ERR_EXPORT_NOT_ALLOWED, api_token_create
from governance.models import ApiToken
from governance.permissions import EXPORT, MANAGE, VIEW, Role, workflow_grant_role
from tests.factories import UserFactory
from tests.security.routes import client_as

pytestmark = pytest.mark.django_db

EXPORT_URL = {"slug": "refunds", "kind": "decisions", "fmt": "csv"}


@pytest.fixture
def viewer(roles, workflow):
    """Someone who may see the workflow and nothing more (an auditor, a stakeholder)."""
    user = UserFactory(username="vera")
    assign_perm(VIEW, user, workflow)
    return user


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("reviewer", 403),
        ("viewer", 403),
        ("ops", 403),
        ("manager", 200),
        ("admin_user", 200),
    ],
)
def test_only_managers_and_admins_download_decisions(request, workflow, who, status):
    user = request.getfixturevalue(who)
    for fmt in ("csv", "jsonl"):
        url = reverse("workflow-export", kwargs={**EXPORT_URL, "fmt": fmt})
        assert client_as(user).get(url).status_code == status


def test_a_refused_export_says_why(reviewer, workflow):
    response = client_as(reviewer).get(reverse("workflow-export", kwargs=EXPORT_URL))
    assert response.status_code == 403
    assert "export the decisions of" in response.content.decode()


@pytest.mark.parametrize(("who", "shown"), [("reviewer", False), ("manager", True)])
def test_the_workflow_page_offers_the_export_only_to_who_may_use_it(request, workflow, who, shown):
    user = request.getfixturevalue(who)
    page = client_as(user).get(reverse("workflow-detail", args=[workflow.slug]))
    assert (reverse("workflow-export", kwargs=EXPORT_URL) in page.content.decode()) is shown


def test_roles_grant_export_to_managers_and_admins_only(roles, workflow):
    assert EXPORT.split(".")[1] in set(
        roles[Role.ADMIN].permissions.values_list("codename", flat=True)
    )
    for role in (Role.REVIEWER, Role.MANAGER, Role.OPS):
        assert not roles[role].permissions.filter(codename="export_workflow").exists()
    granted = {}
    for role in (Role.REVIEWER, Role.MANAGER, Role.OPS):
        user = UserFactory(username=f"grant-{role}")
        workflow_grant_role(user=user, workflow=workflow, role=role)
        granted[role] = "export_workflow" in get_perms(user, workflow)
    assert granted == {Role.REVIEWER: False, Role.MANAGER: True, Role.OPS: False}


def test_the_migration_lets_todays_managers_keep_exporting(roles, workflow):
    from importlib import import_module

    from django.apps import apps

    migration = import_module("governance.migrations.0007_workflow_export_permission")
    manager = UserFactory(username="old-manager")
    assign_perm(MANAGE, manager, workflow)  # granted before the permission existed
    team = Group.objects.create(name="refund-managers")
    assign_perm(MANAGE, team, workflow)
    reviewer = UserFactory(username="old-reviewer")
    assign_perm(VIEW, reviewer, workflow)
    roles[Role.ADMIN].permissions.remove(
        *roles[Role.ADMIN].permissions.filter(codename="export_workflow")
    )

    migration.export_for_managers(apps, None)

    assert "export_workflow" in get_perms(manager, workflow)
    assert "export_workflow" in get_perms(team, workflow)
    assert "export_workflow" not in get_perms(reviewer, workflow)
    assert roles[Role.ADMIN].permissions.filter(codename="export_workflow").exists()


def test_a_token_with_the_export_scope_needs_a_creator_who_may_export(workflow, reviewer, manager):
    with pytest.raises(ValidationError) as refused:
        api_token_create(
            name="leak", workflows=[workflow], verbs=[ApiToken.Verb.EXPORT_READ], actor=reviewer
        )
    assert refused.value.message_dict["verbs"] == [ERR_EXPORT_NOT_ALLOWED.format(slug="refunds")]
    api_token_create(
        name="bi", workflows=[workflow], verbs=[ApiToken.Verb.EXPORT_READ], actor=manager
    )
    api_token_create(
        name="ops-cli",
        workflows=[workflow],
        verbs=[ApiToken.Verb.EXPORT_READ],
        actor="system:manage.py",
    )
    # A reviewer may still make a token that reads what they may read.
    api_token_create(
        name="reads", workflows=[workflow], verbs=[ApiToken.Verb.DECISIONS_READ], actor=reviewer
    )

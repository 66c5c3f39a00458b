"""access_workflow answers in one query what Django and guardian answer in four."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import Http404
from django.test.utils import CaptureQueriesContext
from guardian.core import ObjectPermissionChecker
from guardian.shortcuts import assign_perm

from governance.permissions import MANAGE, REVIEW, VIEW, Role, access_workflow
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _reference(user, workflow, perm: str) -> bool:
    """What the check meant before: global permissions, or guardian's object ones."""
    checker = ObjectPermissionChecker(user)
    return user.has_perm(perm) or checker.has_perm(perm.split(".", 1)[1], workflow)


def _outcome(user, workflow, perm: str) -> str:
    try:
        access_workflow(user=user, slug=workflow.slug, perm=perm)
    except Http404:
        return "404"
    except PermissionDenied:
        return "403"
    return "ok"


def _expected(user, workflow, perm: str) -> str:
    if not _reference(user, workflow, VIEW):
        return "404"
    return "ok" if perm == VIEW or _reference(user, workflow, perm) else "403"


@pytest.fixture
def users(roles, workflow, other_workflow):
    """One user per way of holding (or not holding) a permission."""
    from django.contrib.auth.models import Group

    direct = UserFactory(username="direct")
    assign_perm(VIEW, direct, workflow)
    assign_perm(REVIEW, direct, workflow)
    team = Group.objects.create(name="refund-team")
    assign_perm(VIEW, team, workflow)
    assign_perm(REVIEW, team, workflow)
    via_group = UserFactory(username="via-group")
    via_group.groups.add(team)
    ops = UserFactory(username="ops-user")
    ops.groups.add(roles[Role.OPS])  # global view and operate
    admin = UserFactory(username="admin-user")
    admin.groups.add(roles[Role.ADMIN])
    global_direct = UserFactory(username="global-direct")
    from django.contrib.auth.models import Permission

    global_direct.user_permissions.add(
        Permission.objects.get(content_type__app_label="governance", codename="review_workflow"),
        Permission.objects.get(content_type__app_label="governance", codename="view_workflow"),
    )
    view_only = UserFactory(username="view-only")
    assign_perm(VIEW, view_only, workflow)
    other = UserFactory(username="other")
    assign_perm(VIEW, other, other_workflow)
    assign_perm(REVIEW, other, other_workflow)
    inactive = UserFactory(username="inactive", is_active=False)
    assign_perm(VIEW, inactive, workflow)
    assign_perm(REVIEW, inactive, workflow)
    superuser = UserFactory(username="root", is_superuser=True)
    nobody = UserFactory(username="nobody")
    return [direct, via_group, ops, admin, global_direct, view_only, other, inactive, superuser,
            nobody]  # fmt: skip


@pytest.mark.parametrize("perm", [VIEW, REVIEW, MANAGE])
def test_access_matches_django_and_guardian_for_every_kind_of_user(users, workflow, perm):
    for user in users:
        assert _outcome(user, workflow, perm) == _expected(user, workflow, perm), user.username


def test_access_is_one_query(users, workflow):
    user = users[1]  # holds review through a group's object permission
    with CaptureQueriesContext(connection) as queries:
        access_workflow(user=user, slug=workflow.slug, perm=REVIEW)
    assert len(queries) == 1


def test_unknown_slug_is_404(users):
    with pytest.raises(Http404):
        access_workflow(user=users[0], slug="no-such-workflow", perm=REVIEW)

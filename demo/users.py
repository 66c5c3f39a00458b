"""The demo's people: one or two users per role, with workflows granted per object."""

from __future__ import annotations

import os
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction

from governance.models import Workflow
from governance.permissions import Role, roles_ensure, workflow_grant_role


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    workflows: tuple[str, ...]  # slugs; "*" for every workflow
    description: str


DEMO_USERS = (
    DemoUser("rita", Role.REVIEWER, ("refunds", "access-requests"), "reviewer: refunds, access"),
    DemoUser("ravi", Role.REVIEWER, ("crm-dedupe",), "reviewer: CRM clean-up only"),
    DemoUser("mona", Role.MANAGER, ("*",), "manager: all three workflows"),
    DemoUser("max", Role.MANAGER, ("*",), "second manager (four eyes)"),
    DemoUser("otto", Role.OPS, (), "ops: sees everything, can pause"),
    DemoUser("ada", Role.ADMIN, (), "admin: everything, plus /admin/"),
)


DEMO_OWNER = "mona"


def demo_password() -> str:
    return os.environ.get("TENURE_DEMO_PASSWORD", "tenure-demo")


@transaction.atomic
def demo_users_seed() -> list[DemoUser]:
    """Create the demo users and grants (idempotent; resets their password)."""
    groups = roles_ensure()
    user_model = get_user_model()
    workflows = list(Workflow.objects.all())
    for spec in DEMO_USERS:
        user, _ = user_model.objects.get_or_create(
            username=spec.username, defaults={"email": f"{spec.username}@tenure.example"}
        )
        user.set_password(demo_password())
        user.is_staff = spec.role == Role.ADMIN
        user.is_superuser = spec.role == Role.ADMIN
        user.save()
        user.groups.add(groups[spec.role])
        for workflow in workflows:
            if "*" in spec.workflows or workflow.slug in spec.workflows:
                workflow_grant_role(user=user, workflow=workflow, role=spec.role)
    # Every demo workflow names an accountable owner: the first manager.
    owner = user_model.objects.get(username=DEMO_OWNER)
    Workflow.objects.filter(owner__isnull=True).update(owner=owner)
    return list(DEMO_USERS)

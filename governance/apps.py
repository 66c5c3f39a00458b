"""The governance app config; after migrations it makes sure the role groups exist."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self) -> None:
        # The role groups exist after every migrate (migration 0008 creates them on the
        # first); this keeps them after a flush, which empties the tables but re-runs
        # post_migrate, as it does for permissions.
        post_migrate.connect(role_groups_keep, sender=self)


def role_groups_keep(*, using: str = "default", **kwargs: Any) -> None:
    """Create missing role groups and add the global permissions they lack; never
    remove a permission an admin gave a group."""
    from django.contrib.auth.models import Group, Permission

    from governance.permissions import GLOBAL_ROLE_PERMS

    for role, perms in GLOBAL_ROLE_PERMS.items():
        group, _ = Group.objects.using(using).get_or_create(name=role)
        codenames = [perm.split(".", 1)[1] for perm in perms]
        held = Permission.objects.using(using).filter(
            content_type__app_label="governance", codename__in=codenames
        )
        group.permissions.add(*held)

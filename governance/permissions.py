"""Who may see and do what: roles are groups, workflows are granted per object."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404
from guardian.shortcuts import assign_perm, get_objects_for_user

from governance import sql as governance_sql
from governance.models import Workflow

User = AbstractBaseUser | AnonymousUser

VIEW = "governance.view_workflow"
REVIEW = "governance.review_workflow"
MANAGE = "governance.manage_workflow"
OPERATE = "governance.operate_workflow"
# Downloading every reviewer's decisions (CSV, JSONL): more than seeing the workflow.
EXPORT = "governance.export_workflow"


class Role:
    REVIEWER = "reviewer"
    MANAGER = "manager"
    OPS = "ops"
    ADMIN = "admin"
    ALL = (REVIEWER, MANAGER, OPS, ADMIN)


# Global permissions a role holds on every workflow. Reviewers and managers hold
# none: they are granted workflows one by one (see workflow_grant_role).
GLOBAL_ROLE_PERMS: dict[str, tuple[str, ...]] = {
    Role.REVIEWER: (),
    Role.MANAGER: (),
    Role.OPS: (VIEW, OPERATE),
    Role.ADMIN: (VIEW, REVIEW, MANAGE, OPERATE, EXPORT),
}
# Object permissions a role receives when granted one workflow.
OBJECT_ROLE_PERMS: dict[str, tuple[str, ...]] = {
    Role.REVIEWER: (VIEW, REVIEW),
    Role.MANAGER: (VIEW, MANAGE, EXPORT),
    Role.OPS: (VIEW, OPERATE),
    Role.ADMIN: (VIEW, REVIEW, MANAGE, OPERATE, EXPORT),
}

ERR_NO_SUCH_WORKFLOW = "There is no workflow called “{slug}”."
ERR_NOT_ALLOWED = "You do not have permission to {what} this workflow."


def roles_ensure() -> dict[str, Group]:
    """Create the role groups with their global permissions (idempotent)."""
    groups = {}
    for role in Role.ALL:
        group, _ = Group.objects.get_or_create(name=role)
        codenames = [perm.split(".", 1)[1] for perm in GLOBAL_ROLE_PERMS[role]]
        group.permissions.set(
            Permission.objects.filter(
                content_type__app_label=Workflow._meta.app_label, codename__in=codenames
            )
        )
        groups[role] = group
    return groups


def workflow_grant_role(*, user: AbstractBaseUser, workflow: Workflow, role: str) -> None:
    for perm in OBJECT_ROLE_PERMS[role]:
        assign_perm(perm, user, workflow)


def workflows_for(user: User, perm: str = VIEW) -> QuerySet[Workflow]:
    if not user.is_authenticated:
        return Workflow.objects.none()
    return get_objects_for_user(user, perm, klass=Workflow, accept_global_perms=True)


def user_roles(user: User) -> set[str]:
    if not user.is_authenticated:
        return set()
    names = set(user.groups.values_list("name", flat=True))
    if user.is_superuser:
        names.add(Role.ADMIN)
    return names & set(Role.ALL)


def is_admin(user: User | None) -> bool:
    """An admin of the console (the admin role, or a superuser), and active."""
    if user is None or not getattr(user, "is_active", False):
        return False
    return Role.ADMIN in user_roles(user)


def access_workflow(*, user: User, slug: str, perm: str = VIEW, what: str = "view") -> Workflow:
    """Fetch a workflow the user may act on, or raise 404 / 403.

    A workflow the user cannot even view is reported as missing, so slugs do
    not leak; one they can view but not act on is a 403 with the reason.

    The workflow and both permission answers come back in one query (this runs
    on every reviewer request). It asks the same sources as ``user.has_perm(perm)
    or ObjectPermissionChecker(user).has_perm(perm, workflow)``: global
    permissions of the user and their groups, object permissions of the user and
    their groups; an active superuser holds everything, an inactive user nothing.
    """
    active = bool(user.is_active)
    superuser = active and bool(getattr(user, "is_superuser", False))
    asks = active and not superuser
    params: list = []
    if asks:
        content_type = ContentType.objects.get_for_model(Workflow)  # cached in-process
        for codename in (VIEW.split(".", 1)[1], perm.split(".", 1)[1]):
            params += [content_type.pk, codename, *[user.pk] * 4]
    workflow, held_view, held_act = governance_sql.workflow_with_permissions(
        slug=slug, held_params=params if asks else None
    )
    if workflow is None:
        raise Http404(ERR_NO_SUCH_WORKFLOW.format(slug=slug))
    may_view = superuser or held_view
    may_act = superuser or held_act
    if not may_view:
        raise Http404(ERR_NO_SUCH_WORKFLOW.format(slug=slug))
    if perm != VIEW and not may_act:
        raise PermissionDenied(ERR_NOT_ALLOWED.format(what=what))
    return workflow

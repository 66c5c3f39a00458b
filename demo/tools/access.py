"""Access-request tools, acting on the sandbox directory."""

from __future__ import annotations

from typing import Annotated, Any

from django.db import IntegrityError, transaction
from pydantic import BaseModel, ConfigDict, Field

from agents.models import RiskClass
from agents.tools.base import Tool, ToolContext, ToolError
from demo.models import DirectoryGroup, DirectoryUser, GroupMembership

ERR_NO_SUCH_USER = "There is no directory user {username}."
ERR_NO_SUCH_GROUP = "There is no directory group {group}."
ERR_USER_INACTIVE = "User {username} is inactive and cannot be granted access."

Username = Annotated[str, Field(pattern=r"^[a-z][a-z0-9._-]{1,63}$")]
GroupName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9._-]{1,99}$")]


class GetUserArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Username


class GetGroupArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    group: GroupName


class GrantMembershipArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Username
    group: GroupName
    justification: Annotated[str, Field(min_length=5, max_length=500)]


def get_user(ctx: ToolContext, args: GetUserArgs) -> dict[str, Any]:
    user = DirectoryUser.objects.filter(username=args.username).first()
    if user is None:
        return {"found": False, "error": ERR_NO_SUCH_USER.format(username=args.username)}
    return {
        "found": True,
        "username": user.username,
        "full_name": user.full_name,
        "email": user.email,
        "department": user.department,
        "manager": user.manager,
        "active": user.active,
        "groups": sorted(user.groups.values_list("name", flat=True)),
    }


def get_group(ctx: ToolContext, args: GetGroupArgs) -> dict[str, Any]:
    group = DirectoryGroup.objects.filter(name=args.group).first()
    if group is None:
        return {"found": False, "error": ERR_NO_SUCH_GROUP.format(group=args.group)}
    return {
        "found": True,
        "group": group.name,
        "description": group.description,
        "privileged": group.privileged,
        "members": group.members.count(),
    }


def grant_group_membership(ctx: ToolContext, args: GrantMembershipArgs) -> dict[str, Any]:
    key = ctx.require_key("grant_group_membership")
    user = DirectoryUser.objects.filter(username=args.username).first()
    if user is None:
        raise ToolError(ERR_NO_SUCH_USER.format(username=args.username))
    if not user.active:
        raise ToolError(ERR_USER_INACTIVE.format(username=args.username))
    group = DirectoryGroup.objects.filter(name=args.group).first()
    if group is None:
        raise ToolError(ERR_NO_SUCH_GROUP.format(group=args.group))
    try:
        with transaction.atomic():
            membership, created = GroupMembership.objects.get_or_create(
                user=user, group=group, defaults={"granted_by_key": key}
            )
    except IntegrityError:
        membership, created = GroupMembership.objects.get(user=user, group=group), False
    return {
        "membership_id": membership.pk,
        "granted": created,
        # Replaying the same key is a no-op; an earlier grant by someone else is reported.
        "replayed": not created and membership.granted_by_key == key,
        "already_member": not created and membership.granted_by_key != key,
    }


TOOLS = [
    Tool(
        name="get_user",
        description="Look up a directory user: department, manager, current groups.",
        args_model=GetUserArgs,
        risk_class=RiskClass.READ,
        handler=get_user,
    ),
    Tool(
        name="get_group",
        description="Look up a directory group: what it grants and whether it is privileged.",
        args_model=GetGroupArgs,
        risk_class=RiskClass.READ,
        handler=get_group,
        cacheable=True,
        cache_seconds=300,
    ),
    Tool(
        name="grant_group_membership",
        description="Add a user to a directory group.",
        args_model=GrantMembershipArgs,
        risk_class=RiskClass.ACCESS,
        handler=grant_group_membership,
        review_facts=(
            ("User", "get_user.full_name"),
            ("Active", "get_user.active"),
            ("Department", "get_user.department"),
            ("Manager", "get_user.manager"),
            ("Groups now", "get_user.groups"),
            ("Group privileged", "get_group.privileged"),
            ("Group members", "get_group.members"),
        ),
        in_database=True,
    ),
]

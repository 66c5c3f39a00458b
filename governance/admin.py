"""The admin site shows governance's records and changes none that widen autonomy.

Levels, grants, caps, policy, gate thresholds and two-approver rules change only
through the console's services, with the gate, four eyes where the ladder requires
them, and an audit event; the records of what happened (decisions, proposals,
executions, the audit log) change nowhere. So every model here is read-only, but a
workflow's name, description and accountable owner, whose edits are audited.
(``tests/console/test_admin_back_door.py`` walks every admin page to hold this.)
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from guardian.admin import GuardedModelAdmin

from governance.models import (
    ApiToken,
    AuditChain,
    AuditEvent,
    AutonomyChange,
    ChatChannel,
    ChatIdentity,
    ConfigChange,
    ModelPrice,
    ToolGrant,
    Workflow,
)
from governance.services import (
    chat_channel_delete,
    chat_channel_save,
    chat_identity_delete,
    chat_identity_save,
    workflow_details_update,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable, never added, changed or deleted from the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ToolGrantInline(ReadOnlyInline):
    model = ToolGrant
    fields = ["tool", "autonomy_level", "enabled", "caps", "updated_at"]
    readonly_fields = fields


EDITABLE_WORKFLOW_FIELDS = ("name", "description", "owner")


@admin.register(Workflow)
class WorkflowAdmin(GuardedModelAdmin):
    """Per-object permissions (who reviews, manages, operates) are managed here;
    the workflow itself only by its name, description and owner, audited."""

    list_display = ["name", "slug", "owner", "autonomy_level", "paused", "updated_at"]
    list_filter = ["autonomy_level", "paused"]
    search_fields = ["name", "slug"]
    inlines = [ToolGrantInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [
            f.name
            for f in Workflow._meta.concrete_fields
            if f.name not in EDITABLE_WORKFLOW_FIELDS and f.editable
        ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # workflows come from a spec applied under change control

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Workflow, form: Any, change: bool) -> None:
        workflow_details_update(
            workflow=obj,
            actor=request.user,
            **{name: form.cleaned_data[name] for name in EDITABLE_WORKFLOW_FIELDS},
        )


@admin.register(AutonomyChange)
class AutonomyChangeAdmin(ReadOnlyAdmin):
    list_display = ["workflow", "grant", "kind", "from_level", "to_level", "status", "created_at"]
    list_filter = ["kind", "status"]


@admin.register(ConfigChange)
class ConfigChangeAdmin(ReadOnlyAdmin):
    list_display = ["workflow", "kind", "tool", "status", "requested_by", "created_at"]
    list_filter = ["kind", "status"]


@admin.register(ToolGrant)
class ToolGrantAdmin(ReadOnlyAdmin):
    list_display = ["workflow", "tool", "autonomy_level", "enabled", "updated_at"]
    list_filter = ["autonomy_level", "enabled"]


@admin.register(ModelPrice)
class ModelPriceAdmin(ReadOnlyAdmin):
    list_display = ["model", "input_per_mtok", "cached_input_per_mtok", "output_per_mtok"]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ["name", "prefix", "created_at", "last_used_at", "revoked_at"]
    exclude = ["token_hash"]


@admin.register(AuditChain)
class AuditChainAdmin(ReadOnlyAdmin):
    list_display = ["key", "seq", "keyed_from_seq"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = [
        "chain",
        "seq",
        "action",
        "actor_label",
        "object_type",
        "object_id",
        "created_at",
    ]
    list_filter = ["action", "chain"]
    search_fields = ["object_id", "actor_label"]


@admin.register(ChatIdentity)
class ChatIdentityAdmin(admin.ModelAdmin):
    """Which Tenure user a chat account acts as (decisions from chat buttons). Every
    link, change and unlink is audited."""

    list_display = ["external_user_id", "platform", "user", "created_at"]
    list_filter = ["platform"]
    search_fields = ["external_user_id", "user__username"]
    raw_id_fields = ["user"]

    def save_model(self, request: HttpRequest, obj: ChatIdentity, form: Any, change: bool) -> None:
        chat_identity_save(identity=obj, actor=request.user)

    def delete_model(self, request: HttpRequest, obj: ChatIdentity) -> None:
        chat_identity_delete(identity=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for identity in queryset:
            chat_identity_delete(identity=identity, actor=request.user)


@admin.register(ChatChannel)
class ChatChannelAdmin(admin.ModelAdmin):
    """A workflow's own incoming-webhook URL for its notices and approval requests."""

    list_display = ["workflow", "updated_at"]
    raw_id_fields = ["workflow"]

    def save_model(self, request: HttpRequest, obj: ChatChannel, form: Any, change: bool) -> None:
        chat_channel_save(channel=obj, actor=request.user)

    def delete_model(self, request: HttpRequest, obj: ChatChannel) -> None:
        chat_channel_delete(channel=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for channel in queryset:
            chat_channel_delete(channel=channel, actor=request.user)

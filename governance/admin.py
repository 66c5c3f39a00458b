from __future__ import annotations

from django.contrib import admin
from guardian.admin import GuardedModelAdmin

from governance.models import AuditEvent, AutonomyChange, ToolGrant, Workflow


class ToolGrantInline(admin.TabularInline):
    model = ToolGrant
    extra = 0


@admin.register(Workflow)
class WorkflowAdmin(GuardedModelAdmin):
    list_display = ["name", "slug", "owner", "autonomy_level", "paused", "updated_at"]
    list_filter = ["autonomy_level", "paused"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [ToolGrantInline]
    # Level and pause change through the console's audited services only.
    readonly_fields = ["autonomy_level", "paused", "paused_at", "paused_reason"]


@admin.register(AutonomyChange)
class AutonomyChangeAdmin(admin.ModelAdmin):
    list_display = ["workflow", "grant", "kind", "from_level", "to_level", "status", "created_at"]
    list_filter = ["kind", "status"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
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

    # Append-only: nobody edits or deletes the audit log, not even in the admin.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

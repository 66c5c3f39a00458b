from __future__ import annotations

from django.contrib import admin

from agents.models import Escalation, Execution, Proposal, Run, Step, WorkItem


class StepInline(admin.TabularInline):
    model = Step
    extra = 0
    fields = ["index", "kind", "name", "latency_ms", "tokens_in", "tokens_out", "cost_usd", "error"]
    readonly_fields = fields
    can_delete = False


@admin.register(WorkItem)
class WorkItemAdmin(admin.ModelAdmin):
    list_display = ["external_id", "workflow", "status", "source", "created_at"]
    list_filter = ["workflow", "status", "source"]
    search_fields = ["external_id", "title"]


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["pk", "work_item", "status", "stop_reason", "model", "tool_calls", "cost_usd"]
    list_filter = ["status", "stop_reason"]
    inlines = [StepInline]


@admin.register(Proposal)
class ProposalAdmin(admin.ModelAdmin):
    list_display = ["pk", "workflow", "tool", "risk_class", "verdict", "status", "created_at"]
    list_filter = ["workflow", "status", "risk_class", "verdict", "flagged_injection"]


@admin.register(Escalation)
class EscalationAdmin(admin.ModelAdmin):
    list_display = ["pk", "workflow", "reason", "status", "created_at"]
    list_filter = ["workflow", "reason", "status"]


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    list_display = ["idempotency_key", "proposal", "status", "attempts", "auto", "created_at"]
    list_filter = ["status", "auto"]
    readonly_fields = ["idempotency_key", "arguments_hash"]

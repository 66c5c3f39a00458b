"""What the agent did, viewable in the admin and changeable nowhere."""

from __future__ import annotations

from django.contrib import admin

from agents.models import (
    ConnectorCredential,
    Escalation,
    EvalCase,
    EvalRun,
    EvalSuite,
    Execution,
    KnowledgeDocument,
    Proposal,
    Run,
    Step,
    ToolDefinition,
    WorkItem,
)
from governance.admin import ReadOnlyAdmin, ReadOnlyInline


class StepInline(ReadOnlyInline):
    model = Step
    fields = ["index", "kind", "name", "latency_ms", "tokens_in", "tokens_out", "cost_usd", "error"]
    readonly_fields = fields


@admin.register(WorkItem)
class WorkItemAdmin(ReadOnlyAdmin):
    list_display = ["external_id", "workflow", "status", "source", "created_at"]
    list_filter = ["workflow", "status", "source"]
    search_fields = ["external_id", "title"]


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ["pk", "work_item", "status", "stop_reason", "model", "tool_calls", "cost_usd"]
    list_filter = ["status", "stop_reason"]
    inlines = [StepInline]


@admin.register(Proposal)
class ProposalAdmin(ReadOnlyAdmin):
    list_display = ["pk", "workflow", "tool", "risk_class", "verdict", "status", "created_at"]
    list_filter = ["workflow", "status", "risk_class", "verdict", "flagged_injection"]


@admin.register(Escalation)
class EscalationAdmin(ReadOnlyAdmin):
    list_display = ["pk", "workflow", "reason", "status", "created_at"]
    list_filter = ["workflow", "reason", "status"]


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdmin):
    list_display = ["idempotency_key", "proposal", "status", "attempts", "auto", "created_at"]
    list_filter = ["status", "auto"]


@admin.register(ToolDefinition)
class ToolDefinitionAdmin(ReadOnlyAdmin):
    list_display = ["workflow", "name", "risk_class", "endpoint_url", "untrusted_output"]


@admin.register(ConnectorCredential)
class ConnectorCredentialAdmin(ReadOnlyAdmin):
    list_display = ["workflow", "name", "fingerprint", "version", "rotated_at"]
    exclude = ["ciphertext"]


@admin.register(KnowledgeDocument)
class KnowledgeDocumentAdmin(ReadOnlyAdmin):
    list_display = ["workflow", "slug", "title", "updated_at"]


@admin.register(EvalSuite)
class EvalSuiteAdmin(ReadOnlyAdmin):
    list_display = ["workflow", "name", "threshold"]


@admin.register(EvalCase)
class EvalCaseAdmin(ReadOnlyAdmin):
    list_display = ["suite", "name", "source", "expected_outcome"]


@admin.register(EvalRun)
class EvalRunAdmin(ReadOnlyAdmin):
    list_display = ["suite", "agent_version", "status", "cases", "passed", "started_at"]

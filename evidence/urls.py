"""The console's read side: home and workflow pages, dashboards, the ops overview,
drill-downs, audit, explain, the evidence pack, promotion, evals and exports."""

from __future__ import annotations

from django.urls import path, re_path

from evidence.views import dashboards, evals, exports, privacy, promotion, tools, workflow

urlpatterns = [
    path("", workflow.home, name="home"),
    path("nav/counts/", workflow.nav_counts, name="nav-counts"),
    path("w/<slug:slug>/", workflow.workflow_detail, name="workflow-detail"),
    path("w/<slug:slug>/changes/", workflow.config_changes, name="workflow-changes"),
    path("w/<slug:slug>/tools/import/", tools.tool_import, name="tool-import"),
    path("w/<slug:slug>/promote/", promotion.promotion_page, name="workflow-promote"),
    path("ops/", dashboards.ops_overview, name="ops-overview"),
    path("w/<slug:slug>/dashboard/", dashboards.dashboard, name="evidence-dashboard"),
    path("w/<slug:slug>/evidence/rows/", dashboards.evidence_rows, name="evidence-rows"),
    path("w/<slug:slug>/evidence-pack/", dashboards.evidence_pack, name="evidence-pack"),
    path("audit/", dashboards.audit_log, name="audit-log"),
    path("privacy/erase/", privacy.erase_subject, name="privacy-erase"),
    path("audit/verify/", dashboards.audit_check, name="audit-verify"),
    path(
        "explain/proposal/<int:proposal_id>/",
        dashboards.explain_proposal,
        name="explain-proposal",
    ),
    path(
        "explain/execution/<int:execution_id>/",
        dashboards.explain_execution,
        name="explain-execution",
    ),
    path("w/<slug:slug>/evals/", evals.suites, name="evals"),
    path("w/<slug:slug>/evals/runs/<int:run_id>/", evals.run_detail, name="eval-run"),
    re_path(
        r"^w/(?P<slug>[-a-zA-Z0-9_]+)/evals/cases\.(?P<fmt>[a-z]+)$",
        evals.cases_export,
        name="eval-cases-export",
    ),
    path("evals/add/proposal/<int:proposal_id>/", evals.add_proposal, name="eval-add-proposal"),
    path(
        "evals/add/escalation/<int:escalation_id>/",
        evals.add_escalation,
        name="eval-add-escalation",
    ),
    path(
        "w/<slug:slug>/export/<slug:kind>.<slug:fmt>",
        exports.export_download,
        name="workflow-export",
    ),
]

"""Evidence: dashboards, the ops overview, drill-downs, audit, explain and the evidence pack."""

from __future__ import annotations

from django.urls import path

from console import evidence_views as views

urlpatterns = [
    path("ops/", views.ops_overview, name="ops-overview"),
    path("w/<slug:slug>/dashboard/", views.dashboard, name="evidence-dashboard"),
    path("w/<slug:slug>/evidence/rows/", views.evidence_rows, name="evidence-rows"),
    path("w/<slug:slug>/evidence-pack/", views.evidence_pack, name="evidence-pack"),
    path("audit/", views.audit_log, name="audit-log"),
    path("audit/verify/", views.audit_check, name="audit-verify"),
    path("explain/proposal/<int:proposal_id>/", views.explain_proposal, name="explain-proposal"),
    path(
        "explain/execution/<int:execution_id>/",
        views.explain_execution,
        name="explain-execution",
    ),
]

from __future__ import annotations

from django.urls import path, re_path

from agents import eval_views

urlpatterns = [
    path("w/<slug:slug>/evals/", eval_views.suites, name="evals"),
    path("w/<slug:slug>/evals/runs/<int:run_id>/", eval_views.run_detail, name="eval-run"),
    re_path(
        r"^w/(?P<slug>[-a-zA-Z0-9_]+)/evals/cases\.(?P<fmt>[a-z]+)$",
        eval_views.cases_export,
        name="eval-cases-export",
    ),
    path(
        "evals/add/proposal/<int:proposal_id>/",
        eval_views.add_proposal,
        name="eval-add-proposal",
    ),
    path(
        "evals/add/escalation/<int:escalation_id>/",
        eval_views.add_escalation,
        name="eval-add-escalation",
    ),
]

"""The console's pages for a workflow: home, the workflow page with its live
panels, and its configuration changes."""

from __future__ import annotations

import functools
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from agents.levels import attach_level_summaries
from agents.models import Escalation, Execution, Run, Step
from agents.tools import BUILTIN_TOOLS, tools_refused
from evidence import metrics, selectors
from governance import change_control
from governance.forms import AutonomyChangeForm, PauseForm, ResumeForm
from governance.htmx import page_or_partial, vary_on_htmx
from governance.models import ConfigChange, Workflow
from governance.permissions import (
    EXPORT,
    MANAGE,
    OPERATE,
    REVIEW,
    access_workflow,
    workflows_for,
)

IN_FLIGHT_LIMIT = 20
MSG_CHANGE_REQUESTED = (
    "Requested: the regression suite passed for the new configuration. "
    "A second manager must approve it."
)
MSG_CHANGE_APPLIED = "Applied: {what}."
CHANGES_TEMPLATE = "console/changes.html"


def _in_flight(workflow: Workflow) -> dict[str, Any]:
    """Runs and executions under way right now, each with its latest trace step, and
    (when paused) how many runs the pause stopped. Three queries, whatever the load.

    A read for the workflow page's live panel; it belongs with evidence.selectors
    once that module is open for edits again.
    """
    latest = Step.objects.filter(run=OuterRef("pk")).order_by("-index")
    runs = list(
        Run.objects.filter(work_item__workflow=workflow, status=Run.Status.RUNNING)
        .select_related("work_item")
        .annotate(
            last_kind=Subquery(latest.values("kind")[:1]),
            last_name=Subquery(latest.values("name")[:1]),
            last_at=Subquery(latest.values("created_at")[:1]),
        )
        .order_by("started_at")[:IN_FLIGHT_LIMIT]
    )
    executions = list(
        Execution.objects.filter(proposal__workflow=workflow, status=Execution.Status.RUNNING)
        .select_related("proposal")
        .order_by("started_at")[:IN_FLIGHT_LIMIT]
    )
    stopped = 0
    if workflow.paused and workflow.paused_at:
        stopped = Escalation.objects.filter(
            workflow=workflow, reason=Escalation.Reason.PAUSED, created_at__gte=workflow.paused_at
        ).count()
    return {"runs": runs, "executions": executions, "stopped": stopped}


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    workflows = list(workflows_for(request.user))
    counts = selectors.queue_counts_for(workflows)
    attach_level_summaries(workflows)
    rows = [(workflow, counts[workflow.pk]) for workflow in workflows]
    template = page_or_partial(request, "console/home.html", "workflow-table")
    context = {"rows": rows, "can_pause_all": request.user.has_perm(OPERATE)}
    response = render(request, template, context)
    return vary_on_htmx(response)


@require_GET
def nav_counts(request: HttpRequest) -> HttpResponse:
    """The live queue counter in the navigation (polled by htmx)."""
    totals = selectors.queue_totals(workflows_for(request.user, REVIEW))
    return render(request, "console/_nav_counts.html", {"totals": totals})


@require_GET
def workflow_detail(request: HttpRequest, slug: str) -> HttpResponse:
    workflow = access_workflow(user=request.user, slug=slug)
    user = request.user
    now = timezone.now()
    context = {
        "workflow": workflow,
        "counts": selectors.queue_counts_for(type(workflow).objects.filter(pk=workflow.pk))[
            workflow.pk
        ],
        "item_counts": selectors.work_item_status_counts(workflow),
        # The gate's window, read as the dashboard reads it (rollups, today live).
        "agreement": metrics.agreement_read(
            workflow, since=metrics.window_start(workflow.gate_window_days, now), now=now
        ),
        "recent_items": selectors.recent_work_items(workflow),
        "grants": selectors.grant_rows(workflow),
        "allowlists": selectors.policy_allowlists(workflow),
        "changes": workflow.autonomy_changes.select_related("grant", "requested_by", "approved_by")[
            :10
        ],
        "can_review": user.has_perm(REVIEW, workflow) or user.has_perm(REVIEW),
        "can_manage": user.has_perm(MANAGE, workflow) or user.has_perm(MANAGE),
        "can_operate": user.has_perm(OPERATE, workflow) or user.has_perm(OPERATE),
        "can_export": user.has_perm(EXPORT, workflow) or user.has_perm(EXPORT),
        "pause_form": PauseForm(),
        "resume_form": ResumeForm(),
        "level_form": AutonomyChangeForm(initial={"to_level": workflow.autonomy_level}),
        "in_flight": _in_flight(workflow),
        # Read only when the full page renders them (not on the panels' polls).
        "refused_tools": functools.partial(tools_refused, workflow),
        "comparison": functools.partial(
            metrics.item_comparison_for_screen,
            metrics.Scope.for_workflow(
                workflow, since=metrics.window_start(workflow.gate_window_days, now)
            ),
        ),
    }
    # Two live panels poll this page: the queue tiles and (part=in-flight) the runs.
    partial = "in-flight" if request.GET.get("part") == "in-flight" else "queue-summary"
    template = page_or_partial(request, "console/workflow_detail.html", partial)
    response = render(request, template, context)
    return vary_on_htmx(response)


def _split(value: str) -> list[str] | None:
    """A comma-separated allowlist; empty means no restriction."""
    names = [v.strip() for v in value.replace("\n", ",").split(",") if v.strip()]
    return names or None


def _changes_context(request: HttpRequest, workflow: Workflow) -> dict[str, Any]:
    user = request.user
    grants = list(workflow.grants.order_by("tool"))
    granted = {g.tool for g in grants if g.enabled}
    policy = workflow.policy if isinstance(workflow.policy, dict) else {}
    allowlists = policy.get("allowlists") or {}
    return {
        "workflow": workflow,
        "grants": grants,
        "addable": sorted(set(BUILTIN_TOOLS) - granted),
        "allowlists": {k: ", ".join(v or []) for k, v in allowlists.items()},
        "changes": workflow.config_changes.select_related("requested_by", "approved_by")[:50],
        "can_manage": user.has_perm(MANAGE, workflow) or user.has_perm(MANAGE),
        "suites": workflow.eval_suites.count(),
    }


@require_http_methods(["GET", "POST"])
def config_changes(request: HttpRequest, slug: str) -> HttpResponse:
    """The workflow's configuration changes, and the form that requests one."""
    workflow = access_workflow(user=request.user, slug=slug)
    if request.method == "POST":
        workflow = access_workflow(
            user=request.user, slug=slug, perm=MANAGE, what="change the configuration of"
        )
        data = request.POST
        action = data.get("action", "")
        kwargs: dict[str, Any] = {"reason": data.get("reason", "")}
        if action == "allowlists":
            kwargs["allowlists"] = {
                "groups": _split(data.get("groups", "")),
                "email_domains": _split(data.get("email_domains", "")),
            }
        else:
            kwargs["tool"] = data.get("tool", "")
            kwargs["remove"] = action == "remove"
            if action == "caps" or action == "add":
                kwargs["caps"] = {k: data.get(k, "").strip() for k in change_control.CAP_KEYS}
        try:
            change = change_control.config_change_request(
                workflow=workflow, actor=request.user, **kwargs
            )
        except ValidationError as exc:
            messages.error(request, exc.messages[0])
        else:
            if change.status == ConfigChange.Status.APPLIED:
                messages.success(
                    request, MSG_CHANGE_APPLIED.format(what=change.get_kind_display().lower())
                )
            else:
                messages.info(request, MSG_CHANGE_REQUESTED)
        return redirect("workflow-changes", slug=slug)
    return render(request, CHANGES_TEMPLATE, _changes_context(request, workflow))

"""The console's shell: home, workflow page, kill switch and autonomy changes."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from console import selectors, services
from console.forms import AutonomyChangeForm, PauseForm, ResumeForm
from console.models import AutonomyChange
from console.permissions import MANAGE, OPERATE, REVIEW, access_workflow, workflows_for

ERR_PAUSE_ALL_NOT_ALLOWED = "Only ops and admins can pause every workflow at once."


def _page_or_partial(request: HttpRequest, template: str, partial: str) -> str:
    if request.htmx and not request.htmx.boosted:
        return f"{template}#{partial}"
    return template


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    workflows = workflows_for(request.user)
    counts = selectors.queue_counts_for(workflows)
    rows = [(workflow, counts[workflow.pk]) for workflow in workflows]
    template = _page_or_partial(request, "console/home.html", "workflow-table")
    context = {"rows": rows, "can_pause_all": request.user.has_perm(OPERATE)}
    response = render(request, template, context)
    response["Vary"] = "HX-Request"
    return response


@require_GET
def nav_counts(request: HttpRequest) -> HttpResponse:
    """The live queue counter in the navigation (polled by htmx)."""
    totals = selectors.queue_totals(workflows_for(request.user, REVIEW))
    return render(request, "console/_nav_counts.html", {"totals": totals})


@require_GET
def workflow_detail(request: HttpRequest, slug: str) -> HttpResponse:
    workflow = access_workflow(user=request.user, slug=slug)
    user = request.user
    context = {
        "workflow": workflow,
        "counts": selectors.queue_counts_for(type(workflow).objects.filter(pk=workflow.pk))[
            workflow.pk
        ],
        "item_counts": selectors.work_item_status_counts(workflow),
        "decided": selectors.decided_counts(workflow),
        "recent_items": selectors.recent_work_items(workflow),
        "grants": workflow.grants.order_by("tool"),
        "changes": workflow.autonomy_changes.select_related("grant", "requested_by", "approved_by")[
            :10
        ],
        "can_review": user.has_perm(REVIEW, workflow) or user.has_perm(REVIEW),
        "can_manage": user.has_perm(MANAGE, workflow) or user.has_perm(MANAGE),
        "can_operate": user.has_perm(OPERATE, workflow) or user.has_perm(OPERATE),
        "pause_form": PauseForm(),
        "resume_form": ResumeForm(),
        "level_form": AutonomyChangeForm(initial={"to_level": workflow.autonomy_level}),
    }
    template = _page_or_partial(request, "console/workflow_detail.html", "queue-summary")
    response = render(request, template, context)
    response["Vary"] = "HX-Request"
    return response


@require_POST
def workflow_pause(request: HttpRequest, slug: str) -> HttpResponse:
    workflow = access_workflow(user=request.user, slug=slug, perm=OPERATE, what="pause")
    form = PauseForm(request.POST)
    if not form.is_valid():
        messages.error(request, form.errors["reason"][0])
        return redirect("workflow-detail", slug=slug)
    try:
        services.workflow_pause(
            workflow=workflow, actor=request.user, reason=form.cleaned_data["reason"]
        )
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
    else:
        messages.success(request, f"{workflow.name} is paused. No new model call or tool runs.")
    return redirect("workflow-detail", slug=slug)


@require_POST
def workflow_pause_all(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(OPERATE):
        raise PermissionDenied(ERR_PAUSE_ALL_NOT_ALLOWED)
    form = PauseForm(request.POST)
    if not form.is_valid():
        messages.error(request, form.errors["reason"][0])
        return redirect("home")
    paused = services.workflow_pause_all(actor=request.user, reason=form.cleaned_data["reason"])
    messages.success(
        request,
        f"Paused {len(paused)} workflow(s). No new model call or tool execution starts.",
    )
    return redirect("home")


@require_POST
def workflow_resume(request: HttpRequest, slug: str) -> HttpResponse:
    workflow = access_workflow(user=request.user, slug=slug, perm=OPERATE, what="resume")
    form = ResumeForm(request.POST)
    form.is_valid()
    try:
        services.workflow_resume(
            workflow=workflow, actor=request.user, reason=form.cleaned_data.get("reason", "")
        )
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
    else:
        messages.success(request, f"{workflow.name} is running again.")
    return redirect("workflow-detail", slug=slug)


@require_POST
def workflow_change_level(request: HttpRequest, slug: str) -> HttpResponse:
    workflow = access_workflow(
        user=request.user, slug=slug, perm=MANAGE, what="change the autonomy of"
    )
    form = AutonomyChangeForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, errors[0])
        return redirect("workflow-detail", slug=slug)
    try:
        change = services.autonomy_change_request(
            workflow=workflow,
            to_level=form.cleaned_data["to_level"],
            actor=request.user,
            reason=form.cleaned_data["reason"],
        )
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
    else:
        if change.status == AutonomyChange.Status.APPLIED:
            messages.success(request, f"{workflow.name} is now {change.get_to_level_display()}.")
        else:
            messages.info(request, "Requested. A second manager must approve it.")
    return redirect("workflow-detail", slug=slug)


@require_POST
def autonomy_change_approve(request: HttpRequest, slug: str, change_id: int) -> HttpResponse:
    workflow = access_workflow(user=request.user, slug=slug, perm=MANAGE, what="approve changes to")
    change = workflow.autonomy_changes.filter(pk=change_id).first()
    if change is None:
        messages.error(request, "That autonomy change does not exist.")
        return redirect("workflow-detail", slug=slug)
    try:
        services.autonomy_change_approve(change=change, actor=request.user)
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
    else:
        messages.success(
            request, f"Approved: {workflow.name} is now {change.get_to_level_display()}."
        )
    return redirect("workflow-detail", slug=slug)

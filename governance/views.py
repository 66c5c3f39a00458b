"""Governance actions from the console: the kill switch, autonomy changes, and
decisions on configuration changes. Each view parses its form and calls a service."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from governance import change_control, services
from governance.forms import AutonomyChangeForm, PauseForm, ResumeForm
from governance.models import AutonomyChange
from governance.permissions import MANAGE, OPERATE, access_workflow

ERR_PAUSE_ALL_NOT_ALLOWED = "Only ops and admins can pause every workflow at once."
MSG_CHANGE_APPLIED = "Applied: {what}."
MSG_CHANGE_DECLINED = "Declined."
ERR_NO_SUCH_CHANGE = "That change does not exist."


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
        target = change.grant.tool if change.grant_id else workflow.name
        messages.success(request, f"Approved: {target} is now {change.get_to_level_display()}.")
    return redirect("workflow-detail", slug=slug)


# --- Change control -------------------------------------------------------------------------


@require_POST
def config_change_decide(request: HttpRequest, slug: str, change_id: int) -> HttpResponse:
    workflow = access_workflow(user=request.user, slug=slug, perm=MANAGE, what="approve changes to")
    change = workflow.config_changes.filter(pk=change_id).first()
    if change is None:
        messages.error(request, ERR_NO_SUCH_CHANGE)
        return redirect("workflow-changes", slug=slug)
    try:
        if request.POST.get("decision") == "decline":
            change_control.config_change_decline(change=change, actor=request.user)
            messages.success(request, MSG_CHANGE_DECLINED)
        else:
            change_control.config_change_approve(change=change, actor=request.user)
            messages.success(
                request, MSG_CHANGE_APPLIED.format(what=change.get_kind_display().lower())
            )
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
    return redirect("workflow-changes", slug=slug)

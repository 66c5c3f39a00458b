"""Governance actions from the console: the kill switch, autonomy changes,
decisions on configuration changes, and model prices. Each view parses its form
and calls a service."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from governance import change_control, services
from governance.forms import AutonomyChangeForm, ModelPriceForm, PauseForm, ResumeForm
from governance.models import AutonomyChange, ConfigChange, ModelPrice
from governance.permissions import MANAGE, OPERATE, access_workflow, is_admin

ERR_PAUSE_ALL_NOT_ALLOWED = "Only ops and admins can pause every workflow at once."
MSG_CHANGE_APPLIED = "Applied: {what}."
MSG_CHANGE_DECLINED = "Declined."
ERR_NO_SUCH_CHANGE = "That change does not exist."
ERR_PRICES_NOT_ADMIN = "Model prices are set by admins."
MSG_PRICE_SET = (
    "{model} now costs ${input} input, ${cached_input} cached input and ${output} output "
    "per million tokens, from its next run."
)
PRICE_HISTORY = 50


def _back(request: HttpRequest, name: str, **kwargs: str) -> HttpResponse:
    """Back where the control was used: the ops overview when it says so (a fixed
    name, never a URL from the request), else the given page."""
    if request.POST.get("return_to") == "ops":
        return redirect("ops-overview")
    return redirect(name, **kwargs)


@require_POST
def workflow_pause(request: HttpRequest, slug: str) -> HttpResponse:
    workflow = access_workflow(user=request.user, slug=slug, perm=OPERATE, what="pause")
    form = PauseForm(request.POST)
    if not form.is_valid():
        messages.error(request, form.errors["reason"][0])
        return _back(request, "workflow-detail", slug=slug)
    try:
        services.workflow_pause(
            workflow=workflow, actor=request.user, reason=form.cleaned_data["reason"]
        )
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
    else:
        messages.success(request, f"{workflow.name} is paused. No new model call or tool runs.")
    return _back(request, "workflow-detail", slug=slug)


@require_POST
def workflow_pause_all(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(OPERATE):
        raise PermissionDenied(ERR_PAUSE_ALL_NOT_ALLOWED)
    form = PauseForm(request.POST)
    if not form.is_valid():
        messages.error(request, form.errors["reason"][0])
        return _back(request, "home")
    paused = services.workflow_pause_all(actor=request.user, reason=form.cleaned_data["reason"])
    messages.success(
        request,
        f"Paused {len(paused)} workflow(s). No new model call or tool execution starts.",
    )
    return _back(request, "home")


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
    return _back(request, "workflow-detail", slug=slug)


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
        if change.evidence.get("moot"):
            messages.warning(request, change.evidence["moot"])
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


# --- Model prices -----------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def model_prices(request: HttpRequest) -> HttpResponse:
    """The price table: every model's price per million tokens, and its changes.
    Admins only, to read as well as to set (the service checks again)."""
    if not is_admin(request.user):
        raise PermissionDenied(ERR_PRICES_NOT_ADMIN)
    initial: dict[str, str] = {"model": request.GET.get("model", "")[:100]}
    current = ModelPrice.objects.filter(model=initial["model"]).first()
    if current is not None:
        initial.update(
            input=str(current.input_per_mtok),
            cached_input=str(current.cached_input_per_mtok),
            output=str(current.output_per_mtok),
        )
    form = ModelPriceForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            change = change_control.model_price_set(
                model=data["model"],
                input=data["input"],
                cached_input=data["cached_input"],
                output=data["output"],
                actor=request.user,
                reason=data["reason"],
            )
        except ValidationError as exc:
            form.add_error(None, exc.messages[0])
        else:
            messages.success(request, MSG_PRICE_SET.format(**change.after))
            return redirect("model-prices")
    changes = ConfigChange.objects.filter(kind=ConfigChange.Kind.SET_PRICE).select_related(
        "requested_by"
    )[:PRICE_HISTORY]
    context = {
        "prices": ModelPrice.objects.all(),
        "changes": changes,
        "fallback": settings.TENURE_FALLBACK_PRICE,
        "form": form,
    }
    status = 400 if request.method == "POST" else 200
    return render(request, "console/prices.html", context, status=status)

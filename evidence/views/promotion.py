"""The promotion page: the gate's evidence, a backtest, and the request form."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from evidence.backtest import backtest_run, caps_parse
from governance import services
from governance.gate import gate_applies, gate_evaluate
from governance.models import AutonomyChange, AutonomyLevel, ToolGrant, Workflow
from governance.moot import promotion_moot
from governance.permissions import MANAGE, access_workflow

ERR_TOP_OF_LADDER = "{target} is already at the top of the ladder."
ERR_NO_SUCH_GRANT = "This workflow has no tool grant called “{tool}”."


class BacktestForm(forms.Form):
    amount = forms.DecimalField(required=False, min_value=0.01, label="Per-action amount cap")
    records = forms.IntegerField(required=False, min_value=1, label="Per-action records cap")
    daily_count = forms.IntegerField(required=False, min_value=1, label="Actions per day")
    daily_amount = forms.DecimalField(required=False, min_value=0.01, label="Amount per day")
    days = forms.IntegerField(initial=30, min_value=1, max_value=365, label="Days of history")


class RequestForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        error_messages={"required": "Give a reason: it is kept with the evidence."},
    )


def _next_level(level: str) -> str | None:
    ladder = AutonomyLevel.ladder()
    index = ladder.index(level)
    return ladder[index + 1] if index + 1 < len(ladder) else None


def _grant_or_404(workflow: Workflow, tool: str) -> ToolGrant | None:
    if not tool:
        return None
    grant = workflow.grants.filter(tool=tool).first()
    if grant is None:
        raise Http404(ERR_NO_SUCH_GRANT.format(tool=tool))
    return grant


@require_http_methods(["GET", "POST"])
def promotion_page(request: HttpRequest, slug: str) -> HttpResponse:
    workflow = access_workflow(user=request.user, slug=slug, perm=MANAGE, what="promote")
    tool = request.GET.get("tool", "")[:100]
    grant = _grant_or_404(workflow, tool)
    current = grant.autonomy_level if grant else workflow.autonomy_level
    target = _next_level(current)
    request_form = RequestForm(request.POST or None)

    if request.method == "POST":
        if target is None:
            messages.error(request, ERR_TOP_OF_LADDER.format(target=tool or workflow.name))
        elif request_form.is_valid():
            try:
                change = services.autonomy_change_request(
                    workflow=workflow,
                    grant=grant,
                    to_level=target,
                    actor=request.user,
                    reason=request_form.cleaned_data["reason"],
                )
            except ValidationError as exc:
                messages.error(request, exc.messages[0])
            else:
                if change.evidence.get("moot"):
                    messages.warning(request, change.evidence["moot"])
                subject = tool or workflow.name
                if change.status == AutonomyChange.Status.APPLIED:
                    messages.success(
                        request, f"{subject} promoted to {change.get_to_level_display()}."
                    )
                else:
                    messages.info(
                        request,
                        f"Promotion of {subject} to {change.get_to_level_display()} requested "
                        "with its evidence frozen. A second manager must approve it.",
                    )
                return redirect("workflow-detail", slug=slug)

    evidence = None
    if target is not None and gate_applies(from_level=current, to_level=target):
        evidence = gate_evaluate(workflow=workflow, tool=tool, from_level=current, to_level=target)

    backtest_form = BacktestForm(request.GET if "days" in request.GET else None)
    backtest = backtest_error = None
    if tool and backtest_form.is_bound and backtest_form.is_valid():
        data = backtest_form.cleaned_data
        try:
            caps = caps_parse(
                {k: data.get(k) for k in ("amount", "records", "daily_count", "daily_amount")}
            )
            backtest = backtest_run(workflow=workflow, tool=tool, caps=caps, days=data["days"])
        except ValueError as exc:
            backtest_error = str(exc)
    elif tool and not backtest_form.is_bound:
        backtest_form = BacktestForm(initial={"days": 30, **(grant.caps if grant else {})})

    context = {
        "workflow": workflow,
        "grant": grant,
        "tool": tool,
        "current": AutonomyLevel(current),
        "target": AutonomyLevel(target) if target else None,
        "evidence": evidence,
        # Said before the request: a promotion the policy makes moot changes nothing.
        "moot": promotion_moot(workflow=workflow, to_level=target, grant=grant) if target else "",
        "request_form": request_form,
        "backtest_form": backtest_form,
        "backtest": backtest,
        "backtest_error": backtest_error,
        "grants": workflow.grants.order_by("tool"),
        "pending": workflow.autonomy_changes.filter(
            status=AutonomyChange.Status.REQUESTED
        ).select_related("grant", "requested_by"),
    }
    return render(request, "console/promote.html", context)

"""Regression evals in the console: suites, runs with per-case reports, one-click cases."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db.models import Count
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from agents import evals
from agents.models import Escalation, EvalCase, EvalRun, EvalSuite, Proposal
from evidence.exports import FORMATS, csv_lines, jsonl_lines
from governance.audit import audit_append
from governance.htmx import vary_on_htmx, wants_partial
from governance.models import Workflow
from governance.permissions import MANAGE, REVIEW, VIEW, access_workflow

INDEX_TEMPLATE = "agents/evals/index.html"
RUN_TEMPLATE = "agents/evals/run.html"
ADD_TEMPLATE = "agents/evals/_add_button.html"
RECENT_RUNS = 10
MAX_CASES_SHOWN = 200

ERR_NO_SUCH_RUN = "That eval run is not in this workflow."
ERR_NO_SUCH_SUITE = "This workflow has no eval suite called “{name}”."
ERR_NO_SUCH_PROPOSAL = "There is no proposal {id}."
ERR_NO_SUCH_ESCALATION = "There is no escalation {id}."
ERR_CANNOT_ADD = "Only reviewers and managers of this workflow can add eval cases."
ERR_UNKNOWN_FORMAT = "“{fmt}” is not an export format: jsonl or csv."
MSG_ADDED = "Added to the regression suite “{suite}” as case #{id}."
MSG_ALREADY = "Already in the regression suite “{suite}” (case #{id})."


def _results(run: EvalRun) -> list[Any]:
    # Failures first: they are what a reader came for.
    results = sorted(run.results.all(), key=lambda r: (r.passed, r.pk))
    for result in results:
        result.expected_text = evals.expected_text(result.expected)
        result.actual_text = evals.actual_text(result.actual)
    return results


@require_GET
def suites(request: HttpRequest, slug: str) -> HttpResponse:
    workflow = access_workflow(user=request.user, slug=slug, perm=VIEW)
    suite_rows = list(
        EvalSuite.objects.filter(workflow=workflow)
        .annotate(n_cases=Count("cases"))
        .order_by("name")
    )
    for suite in suite_rows:
        suite.recent_runs = list(suite.runs.order_by("-started_at", "-pk")[:RECENT_RUNS])
    latest = (
        EvalRun.objects.filter(suite__workflow=workflow, finished_at__isnull=False)
        .select_related("suite")
        .order_by("-finished_at", "-pk")
        .first()
    )
    selected = request.GET.get("suite", "")[:100]
    cases = EvalCase.objects.filter(suite__workflow=workflow).select_related("suite")
    if selected:
        if not any(s.name == selected for s in suite_rows):
            raise Http404(ERR_NO_SUCH_SUITE.format(name=selected))
        cases = cases.filter(suite__name=selected)
    context = {
        "workflow": workflow,
        "suites": suite_rows,
        "status": evals.suite_status(workflow),
        "current_version": evals.CURRENT_VERSION,
        "latest": latest,
        "results": _results(latest) if latest else [],
        "cases": list(cases.order_by("suite__name", "pk")[:MAX_CASES_SHOWN]),
        "selected": selected,
    }
    template = f"{INDEX_TEMPLATE}#cases" if wants_partial(request) else INDEX_TEMPLATE
    return vary_on_htmx(render(request, template, context))


@require_GET
def run_detail(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    workflow = access_workflow(user=request.user, slug=slug, perm=VIEW)
    run = (
        EvalRun.objects.filter(pk=run_id, suite__workflow=workflow).select_related("suite").first()
    )
    if run is None:
        raise Http404(ERR_NO_SUCH_RUN)
    results = _results(run)
    if request.GET.get("show") == "failing":
        results = [r for r in results if not r.passed]
    context = {"workflow": workflow, "run": run, "results": results}
    template = f"{RUN_TEMPLATE}#results" if wants_partial(request) else RUN_TEMPLATE
    return vary_on_htmx(render(request, template, context))


def _can_add(request: HttpRequest, workflow: Workflow) -> bool:
    user = request.user
    return any(user.has_perm(p, workflow) or user.has_perm(p) for p in (REVIEW, MANAGE))


def _added(request: HttpRequest, workflow: Workflow, case: EvalCase, created: bool) -> HttpResponse:
    text = (MSG_ADDED if created else MSG_ALREADY).format(suite=case.suite.name, id=case.pk)
    if wants_partial(request):
        context = {"workflow": workflow, "case": case, "created": created, "message": text}
        return vary_on_htmx(render(request, f"{ADD_TEMPLATE}#added", context))
    messages.success(request, text)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("evals", args=[workflow.slug])
    return HttpResponseRedirect(target)


def _refused(request: HttpRequest, message: str, status: int) -> HttpResponse:
    if wants_partial(request):
        return vary_on_htmx(
            render(request, f"{ADD_TEMPLATE}#refused", {"message": message}, status=status)
        )
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def _suite_for(request: HttpRequest, workflow: Workflow) -> EvalSuite | None:
    name = request.POST.get("suite", "").strip()[:100]
    if not name:
        return None
    suite = EvalSuite.objects.filter(workflow=workflow, name=name).first()
    if suite is None:
        raise Http404(ERR_NO_SUCH_SUITE.format(name=name))
    return suite


@require_POST
def add_proposal(request: HttpRequest, proposal_id: int) -> HttpResponse:
    """One click: the decided proposal's run becomes a case of the workflow's suite."""
    proposal = (
        Proposal.objects.select_related("workflow", "run", "work_item")
        .filter(pk=proposal_id)
        .first()
    )
    if proposal is None:
        raise Http404(ERR_NO_SUCH_PROPOSAL.format(id=proposal_id))
    workflow = access_workflow(user=request.user, slug=proposal.workflow.slug, perm=VIEW)
    if not _can_add(request, workflow):
        return _refused(request, ERR_CANNOT_ADD, 403)
    try:
        decision = proposal.decision
    except ObjectDoesNotExist:
        return _refused(request, evals.ERR_NOT_DECIDED.format(id=proposal.pk), 409)
    try:
        case, created = evals.eval_case_from_decision(
            decision=decision, suite=_suite_for(request, workflow), actor=request.user
        )
    except ValidationError as exc:
        return _refused(request, "; ".join(exc.messages), 400)
    return _added(request, workflow, case, created)


@require_POST
def add_escalation(request: HttpRequest, escalation_id: int) -> HttpResponse:
    escalation = (
        Escalation.objects.select_related("workflow", "run", "work_item")
        .filter(pk=escalation_id)
        .first()
    )
    if escalation is None:
        raise Http404(ERR_NO_SUCH_ESCALATION.format(id=escalation_id))
    workflow = access_workflow(user=request.user, slug=escalation.workflow.slug, perm=VIEW)
    if not _can_add(request, workflow):
        return _refused(request, ERR_CANNOT_ADD, 403)
    try:
        case, created = evals.eval_case_from_escalation(
            escalation=escalation, suite=_suite_for(request, workflow), actor=request.user
        )
    except ValidationError as exc:
        return _refused(request, "; ".join(exc.messages), 400)
    return _added(request, workflow, case, created)


@require_GET
def cases_export(request: HttpRequest, slug: str, fmt: str) -> HttpResponse:
    """Eval cases as JSONL or CSV, redacted like every export, and audited."""
    workflow = access_workflow(user=request.user, slug=slug, perm=VIEW)
    if fmt not in FORMATS:
        raise Http404(ERR_UNKNOWN_FORMAT.format(fmt=fmt))
    audit_append(
        action="export.eval_cases", actor=request.user, workflow=workflow, data={"format": fmt}
    )
    rows = evals.eval_case_rows(workflow)
    lines = jsonl_lines(rows) if fmt == "jsonl" else csv_lines(rows, evals.EVAL_CASE_COLUMNS)
    response = StreamingHttpResponse(lines, content_type=f"{FORMATS[fmt]}; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = (
        f'attachment; filename="{workflow.slug}-eval-cases-{stamp}.{fmt}"'
    )
    response["Cache-Control"] = "no-store"
    return response

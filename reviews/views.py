"""The reviewer queues: claim, show the card, decide, and resolve escalations."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents.models import Escalation, Proposal, RiskClass
from governance.htmx import vary_on_htmx, wants_partial
from governance.models import Workflow
from governance.permissions import REVIEW, access_workflow, workflows_for
from reviews import claims, selectors, services
from reviews.forms import (
    EscalationResolveForm,
    decision_from_post,
    seconds_since_served,
    served_stamp,
)
from reviews.models import Approval, Claim, Decision, RejectReason
from reviews.selectors import QueueFilters

ERR_NO_SUCH_PROPOSAL = "That proposal is not in this workflow."
ERR_NO_SUCH_ESCALATION = "That escalation is not in this workflow."
MSG_HELD_BY_OTHER = "Another reviewer holds this proposal right now; here is the next one."
MSG_DONE = {
    Decision.Verdict.ACCEPT: "Recorded: {what} #{pk}, accepted.",
    Decision.Verdict.EDIT: "Recorded: {what} #{pk}, edited.",
    Decision.Verdict.REJECT: "Recorded: {what} #{pk}, rejected.",
}
MSG_FIRST_APPROVAL = (
    "Recorded: first approval of {what} #{pk}. It executes once a second reviewer approves it."
)
MSG_SAMPLE_DONE = "Recorded: post-hoc review of {what} #{pk}, {verdict}."
QUEUE_TEMPLATE = "reviews/queue.html"
QUEUE_CHANGED_EVENT = "tenure:queue-changed"
ESCALATIONS_TEMPLATE = "reviews/escalations.html"
ESCALATION_TEMPLATE = "reviews/escalation.html"
# (value, label, key): the key is the number that picks the reason (1-7).
REJECT_CHOICES = [
    (value, label, str(key)) for key, (value, label) in enumerate(RejectReason.choices, start=1)
]


def _review_workflow(request: HttpRequest, slug: str) -> Workflow:
    return access_workflow(user=request.user, slug=slug, perm=REVIEW, what="review")


def _queue_url(workflow: Workflow | None, filters: QueueFilters) -> str:
    url = reverse("review-queue", args=[workflow.slug]) if workflow else reverse("review-queue-all")
    query = filters.as_query()
    return f"{url}?{urlencode(query)}" if query else url


def _card_query(scope: Workflow | None, filters: QueueFilters) -> str:
    query = filters.as_query()
    if scope is None:
        query["scope"] = "all"
    return f"?{urlencode(query)}" if query else ""


def _scope_inputs(scope: Workflow | None, filters: QueueFilters) -> SafeString:
    """The hidden inputs that carry the scope and filters through each decision form
    (the card has three): made once per response rather than once per form."""
    inputs = [("scope", "all")] if scope is None else []
    inputs += list(filters.as_query().items())
    return format_html_join("", '<input type="hidden" name="{}" value="{}">', inputs)


def _card_context(
    *,
    scope: Workflow | None,
    filters: QueueFilters,
    card: selectors.Card | None,
    notice: str = "",
    notice_level: str = "info",
) -> dict[str, Any]:
    """What the card partial needs, and nothing more: it renders after every decision."""
    return {
        "scope": scope,
        "filters": filters,
        "scope_inputs": _scope_inputs(scope, filters),
        "reject_reasons": REJECT_CHOICES,
        "card": card,
        "notice": notice,
        "notice_level": notice_level,
    }


def _counts_url(scope: Workflow | None) -> str:
    if scope is not None:
        return reverse("review-queue-counts", args=[scope.slug])
    return reverse("review-queue-all-counts")


def _list_context(
    *, workflows: list[Workflow], scope: Workflow | None, filters: QueueFilters
) -> dict[str, Any]:
    query = urlencode({"part": "list", **filters.as_query()})
    return {
        "scope": scope,
        "filters": filters,
        "list_url": f"{_counts_url(scope)}?{query}",
        "rows": selectors.queue_rows(
            workflow_ids=[w.pk for w in workflows],
            filters=filters,
            query=_card_query(scope, filters),
        ),
    }


def _queue_context(
    *,
    workflows: list[Workflow],
    scope: Workflow | None,
    filters: QueueFilters,
    card: selectors.Card | None,
    notice: str = "",
    notice_level: str = "info",
) -> dict[str, Any]:
    return {
        **_card_context(
            scope=scope, filters=filters, card=card, notice=notice, notice_level=notice_level
        ),
        **_list_context(workflows=workflows, scope=scope, filters=filters),
        "workflows": workflows,
        "queue_url": _queue_url(scope, filters),
        "counts_url": _counts_url(scope),
        "sizes": selectors.queue_sizes(workflows),
        "tool_names": selectors.tool_names([w.pk for w in workflows]),
        "risk_choices": RiskClass.choices,
        "verdict_choices": Proposal.Verdict.choices,
    }


def _next_card(
    request: HttpRequest, *, scope: Workflow | None, filters: QueueFilters
) -> selectors.Card | None:
    claim = claims.claim_next(reviewer=request.user, workflow=scope, filters=filters)
    if claim is None:
        return None
    return selectors.card_for(proposal_id=claim.proposal_id, claim=claim, workflow=scope)


def _render_queue(
    request: HttpRequest,
    *,
    scope: Workflow | None,
    filters: QueueFilters,
    card: selectors.Card | None,
    notice: str = "",
    notice_level: str = "info",
    status: int = 200,
    decided: int | None = None,
) -> HttpResponse:
    """The whole queue page; or (htmx) just the card, with the decided row removed
    from the list out of band. The counts and the list refresh on their own: the
    response's HX-Trigger tells the counts (and the navigation) to poll now."""
    if not wants_partial(request):
        context = _queue_context(
            workflows=_scope_workflows(request, scope),
            scope=scope,
            filters=filters,
            card=card,
            notice=notice,
            notice_level=notice_level,
        )
        return vary_on_htmx(render(request, QUEUE_TEMPLATE, context, status=status))
    context = _card_context(
        scope=scope, filters=filters, card=card, notice=notice, notice_level=notice_level
    )
    # The card needs only its own context and the CSRF token for its forms: a
    # plain context skips the page's context processors (navigation roles, ...).
    context["csrf_token"] = get_token(request)
    html = render_to_string(f"{QUEUE_TEMPLATE}#card", context)
    headers = {}
    if decided is not None:
        html += f'<li id="q-{int(decided)}" hx-swap-oob="delete"></li>'
        headers["HX-Trigger"] = QUEUE_CHANGED_EVENT
    return vary_on_htmx(HttpResponse(html, status=status, headers=headers))


def _scope_workflows(request: HttpRequest, scope: Workflow | None) -> list[Workflow]:
    if scope is not None:
        return [scope]
    return list(workflows_for(request.user, REVIEW).order_by("name"))


@require_GET
def queue_all(request: HttpRequest) -> HttpResponse:
    """Every queue the reviewer may work, served in one stream."""
    filters = QueueFilters.from_query(request.GET)
    workflows = _scope_workflows(request, None)
    card = _next_card(request, scope=None, filters=filters) if workflows else None
    return _render_queue(request, scope=None, filters=filters, card=card)


@require_GET
def queue(request: HttpRequest, slug: str) -> HttpResponse:
    workflow = _review_workflow(request, slug)
    filters = QueueFilters.from_query(request.GET)
    card = _next_card(request, scope=workflow, filters=filters)
    return _render_queue(request, scope=workflow, filters=filters, card=card)


def _counts(request: HttpRequest, scope: Workflow | None) -> HttpResponse:
    """The live counts, or with ``part=list`` the head of the queue (both polled)."""
    workflows = _scope_workflows(request, scope)
    if request.GET.get("part") == "list":
        filters = QueueFilters.from_query(request.GET)
        context = _list_context(workflows=workflows, scope=scope, filters=filters)
        return vary_on_htmx(render(request, f"{QUEUE_TEMPLATE}#queue-list", context))
    context = {
        "scope": scope,
        "sizes": selectors.queue_sizes(workflows),
        "counts_url": _counts_url(scope),
    }
    return vary_on_htmx(render(request, f"{QUEUE_TEMPLATE}#counts", context))


@require_GET
def queue_counts(request: HttpRequest, slug: str) -> HttpResponse:
    """Live queue size and oldest age (polled by htmx)."""
    return _counts(request, _review_workflow(request, slug))


@require_GET
def queue_all_counts(request: HttpRequest) -> HttpResponse:
    return _counts(request, None)


def _scope_from(request: HttpRequest, workflow: Workflow) -> Workflow | None:
    data = request.POST if request.method == "POST" else request.GET
    return None if data.get("scope") == "all" else workflow


@require_GET
def card(request: HttpRequest, slug: str, proposal_id: int) -> HttpResponse:
    """Open one proposal from the list: claim it if it is free."""
    workflow = _review_workflow(request, slug)
    scope = _scope_from(request, workflow)
    filters = QueueFilters.from_query(request.GET)
    proposal = Proposal.objects.filter(pk=proposal_id, workflow=workflow).first()
    if proposal is None:
        raise Http404(ERR_NO_SUCH_PROPOSAL)
    claim = claims.claim_proposal(reviewer=request.user, proposal=proposal)
    notice = ""
    if claim is None:
        notice = MSG_HELD_BY_OTHER
        next_card = _next_card(request, scope=scope, filters=filters)
    else:
        next_card = selectors.card_for(proposal_id=proposal.pk, claim=claim, workflow=workflow)
    return _render_queue(
        request,
        scope=scope,
        filters=filters,
        card=next_card,
        notice=notice,
    )


def _card_with_errors(
    request: HttpRequest,
    *,
    workflow: Workflow,
    proposal_id: int,
    panel: str,
    field_errors: dict[str, list[str]],
    submitted: dict[str, str],
) -> selectors.Card:
    claim = Claim.objects.filter(proposal_id=proposal_id, reviewer=request.user).first()
    card = selectors.card_for(proposal_id=proposal_id, claim=claim, workflow=workflow)
    card.open_panel = panel
    card.field_errors = field_errors
    card.form_errors = field_errors.get("__all__", [])
    for item in card.fields:
        item.errors = field_errors.get(item.name, [])
        if item.input_name in submitted or item.kind == "boolean":
            item.value = submitted.get(item.input_name, "")
    card.reject_values = {
        "reason": submitted.get("reason", ""),
        "reason_text": submitted.get("reason_text", ""),
    }
    return card


def _decided_message(decision: Decision | Approval) -> str:
    proposal = decision.proposal  # the row the decision locked and wrote
    if isinstance(decision, Approval):
        return MSG_FIRST_APPROVAL.format(what=proposal.tool, pk=proposal.pk)
    if decision.kind == Decision.Kind.SAMPLE:
        verdict = decision.get_verdict_display().lower()
        return MSG_SAMPLE_DONE.format(what=proposal.tool, pk=proposal.pk, verdict=verdict)
    return MSG_DONE[decision.verdict].format(what=proposal.tool, pk=proposal.pk)


def _refused(request: HttpRequest, *, scope: Workflow | None, filters: QueueFilters, message: str):
    """The decision could not apply (claim lost, already decided): say why, then the
    next card (htmx), or back to the queue."""
    if not wants_partial(request):
        messages.error(request, message)
        return HttpResponseRedirect(_queue_url(scope, filters), status=303)
    card_ = _next_card(request, scope=scope, filters=filters)
    return _render_queue(
        request, scope=scope, filters=filters, card=card_, notice=message, notice_level="error"
    )


def _invalid(
    request: HttpRequest,
    exc: ValidationError,
    *,
    workflow: Workflow,
    scope: Workflow | None,
    filters: QueueFilters,
    proposal_id: int,
) -> HttpResponse:
    """The same card again, its edit or reject panel open with the errors."""
    field_errors = (
        exc.field_errors
        if isinstance(exc, services.ArgumentsInvalid)
        else getattr(exc, "message_dict", {"__all__": exc.messages})
    )
    panel = "edit" if request.POST.get("verdict") == Decision.Verdict.EDIT else "reject"
    card_ = _card_with_errors(
        request,
        workflow=workflow,
        proposal_id=proposal_id,
        panel=panel,
        field_errors=field_errors,
        submitted=request.POST.dict(),
    )
    status = 200 if wants_partial(request) else 422
    return _render_queue(request, scope=scope, filters=filters, card=card_, status=status)


@require_POST
def decide(request: HttpRequest, slug: str, proposal_id: int) -> HttpResponse:
    """Accept, edit or reject; then serve the next card (htmx) or redirect (plain POST)."""
    workflow = _review_workflow(request, slug)
    scope = _scope_from(request, workflow)
    filters = QueueFilters.from_query(request.POST)
    next_claim = None
    try:
        decision_input = decision_from_post(
            request.POST, workflow=workflow, proposal_id=proposal_id, reviewer=request.user
        )
        if wants_partial(request):
            # One transaction (one commit) for the decision and the next claim.
            decision, next_claim = services.proposal_decide_and_claim_next(
                **decision_input, scope=scope, filters=filters
            )
        else:
            decision = services.proposal_decide(**decision_input)
    except Proposal.DoesNotExist:
        raise Http404(ERR_NO_SUCH_PROPOSAL) from None
    except services.DecisionRefused as exc:
        return _refused(request, scope=scope, filters=filters, message=exc.messages[0])
    except ValidationError as exc:
        return _invalid(
            request, exc, workflow=workflow, scope=scope, filters=filters, proposal_id=proposal_id
        )
    done = _decided_message(decision)
    if not wants_partial(request):
        messages.success(request, done)
        return HttpResponseRedirect(_queue_url(scope, filters), status=303)
    card_ = next_claim and selectors.card_for(
        proposal_id=next_claim.proposal_id, claim=next_claim, workflow=scope
    )
    return _render_queue(
        request,
        scope=scope,
        filters=filters,
        card=card_ or None,
        notice=done,
        notice_level="success",
        decided=decision.proposal.pk,
    )


# --- Escalations ------------------------------------------------------------------


def _escalations_page(request: HttpRequest, *, scope: Workflow | None) -> HttpResponse:
    workflows = _scope_workflows(request, scope)
    context = {
        "scope": scope,
        "workflows": workflows,
        "sizes": selectors.queue_sizes(workflows),
        "counts_url": reverse("review-queue-counts", args=[scope.slug])
        if scope
        else reverse("review-queue-all-counts"),
        "escalations": selectors.escalation_rows(workflow_ids=[w.pk for w in workflows]),
    }
    template = f"{ESCALATIONS_TEMPLATE}#escalation-list" if wants_partial(request) else None
    return vary_on_htmx(render(request, template or ESCALATIONS_TEMPLATE, context))


@require_GET
def escalations_all(request: HttpRequest) -> HttpResponse:
    return _escalations_page(request, scope=None)


@require_GET
def escalations(request: HttpRequest, slug: str) -> HttpResponse:
    return _escalations_page(request, scope=_review_workflow(request, slug))


@require_http_methods(["GET", "POST"])
def escalation(request: HttpRequest, slug: str, escalation_id: int) -> HttpResponse:
    """One escalation's packet and the form that resolves it."""
    workflow = _review_workflow(request, slug)
    try:
        view = selectors.escalation_for(escalation_id=escalation_id, workflow=workflow)
    except Escalation.DoesNotExist:
        raise Http404(ERR_NO_SUCH_ESCALATION) from None
    status = 200
    if request.method == "POST":
        form = EscalationResolveForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.escalation_resolve(
                    escalation_id=escalation_id,
                    reviewer=request.user,
                    outcome=data["outcome"],
                    note=data["note"],
                    packet_rating=data["packet_rating"],
                    minutes_saved=data["minutes_saved"],
                    seconds_spent=seconds_since_served(data["served"], escalation_id),
                    workflow=workflow,
                )
            except services.DecisionRefused as exc:
                messages.error(request, exc.messages[0])
            except ValidationError as exc:
                for field_name, errors in exc.message_dict.items():
                    form.add_error(field_name if field_name in form.fields else None, errors)
                status = 422
            else:
                messages.success(request, f"Escalation #{escalation_id} resolved. Thank you.")
                return HttpResponseRedirect(reverse("review-escalations", args=[slug]), status=303)
            if status == 200:
                return HttpResponseRedirect(reverse("review-escalations", args=[slug]), status=303)
        else:
            status = 422
    else:
        form = EscalationResolveForm(initial={"served": served_stamp(escalation_id)})
    context = {"workflow": workflow, "view": view, "escalation": view.escalation, "form": form}
    return vary_on_htmx(render(request, ESCALATION_TEMPLATE, context, status=status))

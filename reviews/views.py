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
from governance.permissions import (
    MANAGE,
    OPERATE,
    REVIEW,
    access_workflow,
    workflows_for,
)
from reviews import claims, selectors, services
from reviews.forms import (
    EscalationResolveForm,
    decision_from_post,
    reject_rest_from_post,
    seconds_since_served,
    served_stamp,
)
from reviews.models import Approval, Claim, Decision, RejectReason
from reviews.selectors import QueueFilters
from reviews.selectors.decision_packet import decision_packet

ERR_NO_SUCH_PROPOSAL = "That proposal is not in this workflow."
ERR_NO_SUCH_ESCALATION = "That escalation is not in this workflow."
MSG_HELD_BY_OTHER = "Another reviewer holds this proposal right now; here is the next one."
MSG_NOT_CLAIMABLE = "That proposal is not waiting for a review any more; here is the next one."
MSG_REST_REJECTED = "Recorded: the rest of the plan rejected, {count} action{plural}."
MSG_UNDONE = "Undone: your decision on {what} #{pk} was taken back. Decide it again."
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
# An undo put a proposal back: the list (which a decision does not re-read) reloads.
QUEUE_RESTORED_EVENT = "tenure:queue-restored"
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


def _card_query(scope: Workflow | None, filters: QueueFilters, *, work: bool = False) -> str:
    """A card link's query: the list's scope and filters, and (``work``) that the
    reviewer opens it to work on it, which claims it."""
    query = filters.as_query()
    if scope is None:
        query["scope"] = "all"
    if work:
        query["work"] = "1"
    return f"?{urlencode(query)}" if query else ""


def _undo_offer(workflow: Workflow, decision_id: int | None) -> dict[str, Any] | None:
    """The Undo button a success notice carries (the service checks everything again)."""
    if decision_id is None:
        return None
    return {
        "url": reverse("review-undo", args=[workflow.slug, decision_id]),
        "seconds": int(services.UNDO_WINDOW.total_seconds()),
    }


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
    replaced: bool = False,
    undo: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the card partial needs, and nothing more: it renders after every decision.
    ``replaced``: this card is not the one the reviewer acted on (their decision was
    refused, or the card they opened was taken); the keyboard layer makes the first
    decision key only point at the notice that says why."""
    return {
        "scope": scope,
        "filters": filters,
        "scope_inputs": _scope_inputs(scope, filters),
        "reject_reasons": REJECT_CHOICES,
        "card": card,
        "notice": notice,
        "notice_level": notice_level,
        "replaced": replaced and card is not None,
        "undo": undo,
        "work_query": _card_query(scope, filters, work=True),
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
            # The list is where the reviewer works the queue: its links claim.
            query=_card_query(scope, filters, work=True),
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
    replaced: bool = False,
) -> dict[str, Any]:
    return {
        **_card_context(
            scope=scope,
            filters=filters,
            card=card,
            notice=notice,
            notice_level=notice_level,
            replaced=replaced,
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
    decided: list[int] | None = None,
    replaced: bool = False,
    undo: dict[str, Any] | None = None,
    restored: bool = False,
) -> HttpResponse:
    """The whole queue page; or (htmx) just the card, with the decided rows removed
    from the list out of band. The counts and the list refresh on their own: the
    response's HX-Trigger tells the counts (and the navigation) to poll now, and
    (``restored``, after an undo) the list too."""
    if card is not None and card.revealed_subjects:
        services.card_reveal_record(card=card, reviewer=request.user)
    if not wants_partial(request):
        context = _queue_context(
            workflows=_scope_workflows(request, scope),
            scope=scope,
            filters=filters,
            card=card,
            notice=notice,
            notice_level=notice_level,
            replaced=replaced,
        )
        return vary_on_htmx(render(request, QUEUE_TEMPLATE, context, status=status))
    context = _card_context(
        scope=scope,
        filters=filters,
        card=card,
        notice=notice,
        notice_level=notice_level,
        replaced=replaced,
        undo=undo,
    )
    # The card needs only its own context and the CSRF token for its forms: a
    # plain context skips the page's context processors (navigation roles, ...).
    context["csrf_token"] = get_token(request)
    html = render_to_string(f"{QUEUE_TEMPLATE}#card", context)
    headers = {}
    if decided:
        html += "".join(f'<li id="q-{int(pk)}" hx-swap-oob="delete"></li>' for pk in decided)
        headers["HX-Trigger"] = QUEUE_CHANGED_EVENT
    if restored:
        headers["HX-Trigger"] = f"{QUEUE_CHANGED_EVENT}, {QUEUE_RESTORED_EVENT}"
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
    """Open one proposal. From the queue list (``work=1``: the reviewer is working the
    queue) it is claimed if it is free; from any other link it is shown read-only,
    with who holds it, and a "Work on this" that claims it."""
    workflow = _review_workflow(request, slug)
    scope = _scope_from(request, workflow)
    filters = QueueFilters.from_query(request.GET)
    proposal = Proposal.objects.filter(pk=proposal_id, workflow=workflow).first()
    if proposal is None:
        raise Http404(ERR_NO_SUCH_PROPOSAL)
    if request.GET.get("work") != "1":
        return _render_queue(
            request,
            scope=scope,
            filters=filters,
            card=_read_only_card(request, proposal=proposal, workflow=workflow),
        )
    claim = claims.claim_proposal(reviewer=request.user, proposal=proposal)
    if claim is not None:
        next_card = selectors.card_for(proposal_id=proposal.pk, claim=claim, workflow=workflow)
        return _render_queue(request, scope=scope, filters=filters, card=next_card)
    # Not the card they asked for: say so, and serve their next one.
    holder = selectors.live_claim(proposal.pk)
    notice = MSG_HELD_BY_OTHER if holder is not None else MSG_NOT_CLAIMABLE
    next_card = _next_card(request, scope=scope, filters=filters)
    return _render_queue(
        request,
        scope=scope,
        filters=filters,
        card=next_card,
        notice=notice,
        notice_level="warning",
        replaced=next_card is not None,
    )


def _read_only_card(
    request: HttpRequest, *, proposal: Proposal, workflow: Workflow
) -> selectors.Card:
    """The card as it is, claiming nothing; the reviewer's own live claim on it (they
    were working on it) keeps it decidable."""
    claim = selectors.live_claim(proposal.pk)
    if claim is not None and claim.reviewer_id == request.user.pk:
        return selectors.card_for(proposal_id=proposal.pk, claim=claim, workflow=workflow)
    card_ = selectors.card_for(proposal_id=proposal.pk, claim=None, workflow=workflow)
    card_.read_only = True
    card_.holder = claim.reviewer.get_username() if claim is not None else ""
    return card_


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


def _refused(
    request: HttpRequest,
    *,
    scope: Workflow | None,
    filters: QueueFilters,
    message: str,
    acted_on: int | None = None,
):
    """The decision could not apply (claim lost, already decided, card replaced): say
    why, then the next card (htmx), or back to the queue. A next card that is not the
    one the reviewer acted on (``acted_on``) is marked as replacing it."""
    if not wants_partial(request):
        messages.error(request, message)
        return HttpResponseRedirect(_queue_url(scope, filters), status=303)
    card_ = _next_card(request, scope=scope, filters=filters)
    return _render_queue(
        request,
        scope=scope,
        filters=filters,
        card=card_,
        notice=message,
        notice_level="error",
        replaced=card_ is not None and card_.proposal.pk != acted_on,
    )


def _invalid(
    request: HttpRequest,
    exc: ValidationError,
    *,
    workflow: Workflow,
    scope: Workflow | None,
    filters: QueueFilters,
    proposal_id: int,
    panel: str = "",
) -> HttpResponse:
    """The same card again, its edit or reject panel (or ``panel``) open with the errors."""
    field_errors = (
        exc.field_errors
        if isinstance(exc, services.ArgumentsInvalid)
        else getattr(exc, "message_dict", {"__all__": exc.messages})
    )
    panel = panel or ("edit" if request.POST.get("verdict") == Decision.Verdict.EDIT else "reject")
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
        return _refused(
            request, scope=scope, filters=filters, message=exc.messages[0], acted_on=proposal_id
        )
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
        decided=[decision.proposal.pk],
        undo=_undo_offer(workflow, services.undo_offer(decision)),
    )


@require_POST
def reject_rest(request: HttpRequest, slug: str, proposal_id: int) -> HttpResponse:
    """Reject every action of the plan still waiting for a human, with one reason;
    then the next card (htmx) or back to the queue."""
    workflow = _review_workflow(request, slug)
    scope = _scope_from(request, workflow)
    filters = QueueFilters.from_query(request.POST)
    try:
        decisions = services.plan_reject_rest(
            **reject_rest_from_post(
                request.POST, workflow=workflow, proposal_id=proposal_id, reviewer=request.user
            )
        )
    except Proposal.DoesNotExist:
        raise Http404(ERR_NO_SUCH_PROPOSAL) from None
    except services.DecisionRefused as exc:
        return _refused(
            request, scope=scope, filters=filters, message=exc.messages[0], acted_on=proposal_id
        )
    except ValidationError as exc:
        return _invalid(
            request,
            exc,
            workflow=workflow,
            scope=scope,
            filters=filters,
            proposal_id=proposal_id,
            panel="reject-rest",
        )
    done = MSG_REST_REJECTED.format(count=len(decisions), plural="" if len(decisions) == 1 else "s")
    if not wants_partial(request):
        messages.success(request, done)
        return HttpResponseRedirect(_queue_url(scope, filters), status=303)
    return _render_queue(
        request,
        scope=scope,
        filters=filters,
        card=_next_card(request, scope=scope, filters=filters),
        notice=done,
        notice_level="success",
        decided=[d.proposal_id for d in decisions],
    )


@require_POST
def undo(request: HttpRequest, slug: str, decision_id: int) -> HttpResponse:
    """Take back the reviewer's last decision (within its window): its card again,
    held by them; or why not, with the card they hold."""
    workflow = _review_workflow(request, slug)
    scope = _scope_from(request, workflow)
    filters = QueueFilters.from_query(request.POST)
    try:
        claim = services.decision_undo(
            reviewer=request.user, decision_id=decision_id, workflow=workflow
        )
    except Proposal.DoesNotExist:
        raise Http404(ERR_NO_SUCH_PROPOSAL) from None
    except services.DecisionRefused as exc:
        # The card on screen (the undo form names it) stays if the reviewer still holds it.
        on_screen = request.POST.get("proposal", "")
        return _refused(
            request,
            scope=scope,
            filters=filters,
            message=exc.messages[0],
            acted_on=int(on_screen) if on_screen.isdigit() else None,
        )
    card_ = (
        selectors.card_for(proposal_id=claim.proposal_id, claim=claim, workflow=workflow)
        if claim is not None
        else None
    )
    done = (
        MSG_UNDONE.format(what=card_.proposal.tool, pk=card_.proposal.pk)
        if card_ is not None
        else MSG_UNDONE.format(what="the proposal", pk=decision_id)
    )
    if not wants_partial(request):
        messages.success(request, done)
        return HttpResponseRedirect(_queue_url(scope, filters), status=303)
    return _render_queue(
        request,
        scope=scope,
        filters=filters,
        card=card_,
        notice=done,
        notice_level="success",
        restored=True,
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
    if view.revealed_subjects:
        services.personal_reveal_record(
            obj=view.escalation,
            workflow=workflow,
            subjects=view.revealed_subjects,
            shown=["work_item"],
            reviewer=request.user,
        )
    status = 200
    tools = selectors.tool_names([workflow.pk])
    if request.method == "POST":
        form = EscalationResolveForm(request.POST, tools=tools)
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
                    actions=data["actions"],
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
        form = EscalationResolveForm(initial={"served": served_stamp(escalation_id)}, tools=tools)
    may_unredact = may_see_unredacted(request.user, workflow)
    unredacted = may_unredact and request.method == "GET" and request.GET.get("unredacted") == "1"
    if unredacted:
        services.escalation_unredacted_view(
            escalation=view.escalation, viewer=request.user, workflow=workflow
        )
    context = {
        "workflow": workflow,
        "view": view,
        "escalation": view.escalation,
        "form": form,
        "packet": decision_packet(
            escalation=view.escalation, steps=view.steps, unredacted=unredacted
        ),
        "may_unredact": may_unredact,
    }
    return vary_on_htmx(render(request, ESCALATION_TEMPLATE, context, status=status))


def may_see_unredacted(user: Any, workflow: Workflow) -> bool:
    """Managers, ops and admins of the workflow may open an item unredacted (audited);
    reviewers see it redacted, apart from the text the item arrived with."""
    return any(user.has_perm(perm) or user.has_perm(perm, workflow) for perm in (MANAGE, OPERATE))

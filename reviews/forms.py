"""Forms that parse reviewer input. The edit form is built from the tool's schema
(``reviews.tools``); these cover the fixed parts."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from django import forms
from django.contrib.auth.models import AbstractBaseUser
from django.core import signing
from django.core.exceptions import ValidationError
from django.http import QueryDict

from agents.models import Proposal
from governance import hygiene
from governance.models import Workflow
from reviews import tools as review_tools
from reviews.models import Decision, EscalationResolution
from reviews.services import ArgumentsInvalid

ERR_STALE_FORM = "This form is too old or was tampered with. Reload the page."
ERR_ACTION_NEEDS_TOOL = "Choose the tool whose action you took, or leave the arguments empty."
ERR_ACTION_NOT_JSON = 'Enter the arguments as a JSON object, such as {"amount": "42.00"}.'
_SERVED_SALT = "reviews.escalation.served"
# Where the card shows a refusal of each posted field: the reject panel shows its
# reason's errors (the note is part of the reason), the rest go to the whole form.
UNSTORABLE_SHOWN_UNDER = {
    "verdict": "__all__",
    "token": "__all__",
    "reason": "reason",
    "reason_text": "reason",
}


def served_stamp(escalation_id: int) -> str:
    """A signed 'served at' time, so the time spent on an escalation is measured
    from when the reviewer opened it, without trusting the client's clock."""
    return signing.dumps({"e": escalation_id, "t": int(time.time())}, salt=_SERVED_SALT)


def seconds_since_served(stamp: str, escalation_id: int) -> int:
    try:
        data = signing.loads(stamp, salt=_SERVED_SALT)
    except signing.BadSignature:
        return 0
    if data.get("e") != escalation_id:
        return 0
    return max(0, int(time.time()) - int(data.get("t", 0)))


class EscalationResolveForm(forms.Form):
    RATING_CHOICES = [
        (1, "1 · useless"),
        (2, "2"),
        (3, "3 · some of it"),
        (4, "4"),
        (5, "5 · everything I needed"),
    ]

    outcome = forms.ChoiceField(
        choices=EscalationResolution.Outcome.choices, widget=forms.RadioSelect
    )
    packet_rating = forms.TypedChoiceField(
        choices=RATING_CHOICES,
        coerce=int,
        widget=forms.RadioSelect,
        label="How useful was the packet?",
    )
    minutes_saved = forms.IntegerField(
        min_value=0,
        max_value=24 * 60,
        initial=0,
        label="Minutes of investigation the packet saved you",
    )
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    action_tool = forms.ChoiceField(
        required=False,
        label="The action you took (tool)",
        help_text="When you took the action yourself: which tool's action it was.",
    )
    action_arguments = forms.CharField(
        required=False,
        label="Its arguments (JSON)",
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text='For example {"order_number": "A-1001", "amount": "42.00"}.',
    )
    served = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args: Any, tools: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["action_tool"].choices = [("", "—"), *((t, t) for t in tools)]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        tool, raw = data.get("action_tool") or "", (data.get("action_arguments") or "").strip()
        if raw and not tool:
            self.add_error("action_tool", ERR_ACTION_NEEDS_TOOL)
        if not tool:
            data["actions"] = []
            return data
        try:
            arguments = json.loads(raw) if raw else {}
        except ValueError:
            self.add_error("action_arguments", ERR_ACTION_NOT_JSON)
            return data
        if not isinstance(arguments, dict):
            self.add_error("action_arguments", ERR_ACTION_NOT_JSON)
            return data
        # The tool's schema checks the arguments in the service (reviews.tools).
        data["actions"] = [{"tool": tool, "arguments": arguments}]
        return data


def decision_from_post(
    data: QueryDict, *, workflow: Workflow, proposal_id: int, reviewer: AbstractBaseUser
) -> dict[str, Any]:
    """The arguments of ``reviews.services.proposal_decide`` from a decision form.

    An edit parses the submitted fields against the tool's schema first (raising
    ``ArgumentsInvalid`` with the field errors); any verdict but accept and reject
    must name a proposal of this workflow before it is refused
    (``Proposal.DoesNotExist``). Text no record can hold (a NUL character) is a
    ValidationError naming its field."""
    for name, shown_under in UNSTORABLE_SHOWN_UNDER.items():
        unstorable = hygiene.text_problem(data.get(name, ""))
        if unstorable:
            raise ValidationError({shown_under: [unstorable]}, code="unstorable")
    verdict = data.get("verdict", "")
    final_arguments = None
    if verdict not in (Decision.Verdict.ACCEPT, Decision.Verdict.REJECT):
        proposal = (
            Proposal.objects.filter(pk=proposal_id, workflow=workflow)
            .only("pk", "tool", "arguments")
            .first()
        )
        if proposal is None:
            raise Proposal.DoesNotExist(f"Proposal {proposal_id} is not in {workflow.slug}.")
        if verdict == Decision.Verdict.EDIT:
            tool = review_tools.tool_for(workflow=workflow, name=proposal.tool)
            fields = review_tools.edit_fields(tool, proposal.arguments)
            final_arguments, parse_errors = review_tools.parse_submitted(fields, data)
            if parse_errors:
                raise ArgumentsInvalid(parse_errors)
    return {
        "proposal_id": proposal_id,
        "reviewer": reviewer,
        "claim_token": data.get("token", ""),
        "verdict": verdict,
        "final_arguments": final_arguments,
        "reason": data.get("reason", ""),
        "reason_text": data.get("reason_text", ""),
        "workflow": workflow,
        **shown_card(data),
    }


def shown_card(data: QueryDict) -> dict[str, Any]:
    """The card a decision form was made on (the console's forms always say it): the
    proposal and its arguments' hash, as the card showed them. A client that does
    not send them is checked by its claim alone."""
    return {
        "shown_proposal_id": data.get("proposal"),
        "shown_arguments_hash": data.get("arguments_hash"),
    }


def reject_rest_from_post(
    data: QueryDict, *, workflow: Workflow, proposal_id: int, reviewer: AbstractBaseUser
) -> dict[str, Any]:
    """The arguments of ``reviews.services.plan_reject_rest`` from its form."""
    return {
        "proposal_id": proposal_id,
        "reviewer": reviewer,
        "claim_token": data.get("token", ""),
        "reason": data.get("reason", ""),
        "reason_text": data.get("reason_text", ""),
        "workflow": workflow,
        **shown_card(data),
    }

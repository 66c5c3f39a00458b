"""Forms that parse reviewer input. The edit form is built from the tool's schema
(``reviews.tools``); these cover the fixed parts."""

from __future__ import annotations

import time
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
    served = forms.CharField(widget=forms.HiddenInput, required=False)


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
    }

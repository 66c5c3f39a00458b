"""Forms that parse reviewer input. The edit form is built from the tool's schema
(``reviews.tools``); these cover the fixed parts."""

from __future__ import annotations

import time

from django import forms
from django.core import signing

from reviews.models import EscalationResolution

ERR_STALE_FORM = "This form is too old or was tampered with. Reload the page."
_SERVED_SALT = "reviews.escalation.served"


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

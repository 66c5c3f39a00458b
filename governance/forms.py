"""Forms of the governance pages: pause, resume, promotion and settings changes."""

from __future__ import annotations

from django import forms

from governance.models import AutonomyLevel


class PauseForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        widget=forms.TextInput(attrs={"placeholder": "Why are you stopping this workflow?"}),
        error_messages={"required": "Say why you are pausing: it goes in the audit log."},
    )


class ResumeForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False)


class AutonomyChangeForm(forms.Form):
    to_level = forms.ChoiceField(choices=AutonomyLevel.choices, label="New level")
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": "Give a reason: it is kept with the change."},
    )


class ModelPriceForm(forms.Form):
    """A model's price, USD per million tokens; the service checks the numbers."""

    model = forms.CharField(max_length=100, label="Model", strip=True)
    input = forms.CharField(max_length=20, label="Input")
    cached_input = forms.CharField(max_length=20, label="Cached input")
    output = forms.CharField(max_length=20, label="Output")
    reason = forms.CharField(
        max_length=2000,
        error_messages={"required": "Give a reason: it is kept with the change."},
    )

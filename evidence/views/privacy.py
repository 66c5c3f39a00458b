"""The erasure page: an admin erases one data subject on request and sees what went."""

from __future__ import annotations

from django import forms
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from evidence.privacy import ERR_IDENTIFIER, subject_erase
from governance.models import AuditEvent, Workflow
from governance.permissions import is_admin

ERR_NOT_ADMIN = "Only an admin can erase a data subject."
HISTORY = 20


class EraseForm(forms.Form):
    identifier = forms.CharField(
        max_length=500,
        strip=True,
        error_messages={"required": ERR_IDENTIFIER},
        help_text="A customer id, e-mail or phone, as the workflow declares it.",
    )
    workflow = forms.ModelChoiceField(
        queryset=Workflow.objects.all(),
        required=False,
        to_field_name="slug",
        empty_label="Every workflow",
    )
    confirm = forms.BooleanField(
        error_messages={"required": "Tick the box: an erasure cannot be undone."}
    )


@require_http_methods(["GET", "POST"])
def erase_subject(request: HttpRequest) -> HttpResponse:
    if not is_admin(request.user):
        raise PermissionDenied(ERR_NOT_ADMIN)
    form = EraseForm(request.POST or None)
    result = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                result = subject_erase(
                    identifier=form.cleaned_data["identifier"],
                    actor=request.user,
                    workflow=form.cleaned_data["workflow"],
                ).as_dict()
            except LookupError as exc:
                form.add_error("identifier", str(exc))
                status = 404
            else:
                form = EraseForm()
        else:
            status = 400
    history = AuditEvent.objects.filter(action="privacy.subject.erased").order_by("-pk")[:HISTORY]
    context = {"form": form, "result": result, "history": history}
    return render(request, "console/privacy_erase.html", context, status=status)

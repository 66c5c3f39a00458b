"""Import tools from OpenAI function schemas into a workflow (paste or upload)."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from agents.models import RiskClass
from agents.specs.tool_import import schemas_parse, tool_schemas_import
from governance.permissions import MANAGE, access_workflow

TEMPLATE = "console/tool_import.html"
MAX_SCHEMA_BYTES = 1_000_000
ERR_ONE_SOURCE = "Paste the schemas or upload a file (one of the two)."
ERR_TOO_BIG = f"The schemas are larger than {MAX_SCHEMA_BYTES // 1000} kB."
ERR_NOT_TEXT = "The file is not UTF-8 text."


class ToolImportForm(forms.Form):
    schemas = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false"}),
        label="OpenAI function schemas (JSON)",
        max_length=MAX_SCHEMA_BYTES,
    )
    file = forms.FileField(required=False, label="…or upload a JSON file")
    risk_class = forms.ChoiceField(choices=RiskClass.choices, label="Risk class")
    endpoint_url = forms.URLField(max_length=500, label="Endpoint (the HTTP tool server)")
    credential_name = forms.SlugField(
        max_length=100, required=False, label="Credential that signs the calls"
    )
    untrusted_output = forms.BooleanField(
        required=False, label="Their output carries text someone outside typed"
    )
    reason = forms.CharField(
        max_length=2000, error_messages={"required": "Give a reason: it is kept with the change."}
    )

    def clean(self) -> dict:
        data = super().clean()
        pasted, upload = (data.get("schemas") or "").strip(), data.get("file")
        if bool(pasted) == bool(upload):
            raise ValidationError(ERR_ONE_SOURCE)
        if upload:
            if upload.size > MAX_SCHEMA_BYTES:
                raise ValidationError(ERR_TOO_BIG)
            try:
                pasted = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                raise ValidationError(ERR_NOT_TEXT) from None
        data["functions"] = schemas_parse(pasted)
        return data


@require_http_methods(["GET", "POST"])
def tool_import(request: HttpRequest, slug: str) -> HttpResponse:
    """Managers import a tool set: each function refused on its own, with the reason;
    the accepted ones are requested under change control (they start in shadow)."""
    workflow = access_workflow(user=request.user, slug=slug, perm=MANAGE, what="import tools into")
    form = ToolImportForm(request.POST or None, request.FILES or None)
    result = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            result = tool_schemas_import(
                workflow=workflow,
                actor=request.user,
                functions=data["functions"],
                risk_class=data["risk_class"],
                endpoint_url=data["endpoint_url"],
                credential_name=data["credential_name"],
                untrusted_output=data["untrusted_output"],
                reason=data["reason"],
            )
            form = ToolImportForm(initial={k: data[k] for k in ("risk_class", "endpoint_url",
                                                                "credential_name")})  # fmt: skip
        else:
            status = 400
    context = {"workflow": workflow, "form": form, "result": result}
    return render(request, TEMPLATE, context, status=status)

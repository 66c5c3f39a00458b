"""Erasure of one data subject on request, for the integration that holds the request."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Schema
from pydantic import Field

from evidence.privacy import ERR_IDENTIFIER, subject_erase
from governance.api import errors
from governance.api.auth import access_workflow_api, token_of
from governance.api.schemas import ERROR_RESPONSES
from governance.models import ApiToken

router = Router(tags=["privacy"])


class EraseIn(Schema):
    identifier: str = Field(
        ..., max_length=500, description="A customer id, e-mail or phone the workflow declares."
    )


class EraseOut(Schema):
    subjects: list[int]
    records: dict[str, int] = Field(description="Rows that held the subject's values, by kind.")
    scrubbed: dict[str, int]
    erased: int


@router.post(
    "/workflows/{slug}/subjects/erase",
    response={200: EraseOut, **ERROR_RESPONSES},
    summary="Erase one data subject",
    description=(
        "Destroys the key of the subject the identifier names (and any plaintext copy of "
        "their values) across work items, proposals, decisions, executions, escalation "
        "packets, traces and eval cases. Rows stay as evidence; metrics are unchanged. "
        "Audited. Scope: `subjects:erase`."
    ),
)
def subject_erase_post(request: HttpRequest, slug: str, body: EraseIn) -> dict[str, object]:
    workflow = access_workflow_api(request, slug=slug, verb=ApiToken.Verb.SUBJECTS_ERASE)
    if not body.identifier.strip():
        raise errors.ApiError(422, errors.VALIDATION_FAILED, ERR_IDENTIFIER)
    try:
        erasure = subject_erase(
            identifier=body.identifier, actor=token_of(request).principal, workflow=workflow
        )
    except LookupError as exc:
        raise errors.ApiError(404, errors.NOT_FOUND, str(exc)) from None
    return erasure.as_dict()

"""Console downloads of decisions (CSV, JSONL), for those who may export the workflow's
decisions (managers and admins by default), not everyone who may view it."""

from __future__ import annotations

from django.http import Http404, HttpRequest, StreamingHttpResponse
from django.views.decorators.http import require_GET

from evidence.exports import ERR_UNKNOWN_EXPORT, EXPORTS, FORMATS, export_response
from governance.permissions import EXPORT, access_workflow


@require_GET
def export_download(request: HttpRequest, slug: str, kind: str, fmt: str) -> StreamingHttpResponse:
    workflow = access_workflow(
        user=request.user, slug=slug, perm=EXPORT, what="export the decisions of"
    )
    if kind not in EXPORTS or fmt not in FORMATS:
        raise Http404(ERR_UNKNOWN_EXPORT.format(kind=kind, kinds=", ".join(EXPORTS)))
    return export_response(kind=kind, workflow=workflow, fmt=fmt, actor=request.user)

"""Tenure's REST API, version 1 (django-ninja).

Mounted with ``path("api/v1/", api.urls)``. Every view under it is exempt from
the login redirect and from CSRF: integrations authenticate with bearer tokens
(``governance.api.auth``), never with a session.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, re_path
from ninja import NinjaAPI

from console.api_docs import LocalSwagger, docs_asset
from governance.api import errors
from governance.api.auth import TokenAuth
from governance.api.parser import StrictJsonParser

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


def max_body_bytes() -> int:
    return int(getattr(settings, "TENURE_API_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))


def _too_large(request: HttpRequest) -> HttpResponse | None:
    """Refuse an oversized body from its Content-Length, before reading a byte of it."""
    raw = request.META.get("CONTENT_LENGTH") or "0"
    try:
        length = int(raw)
    except ValueError:
        length = -1
    if length < 0:
        return errors.error_response(400, errors.BAD_REQUEST, errors.ERR_BAD_LENGTH)
    limit = max_body_bytes()
    if length > limit:
        return errors.error_response(
            413, errors.TOO_LARGE, errors.ERR_TOO_LARGE.format(limit=limit)
        )
    return None


def _has_nul(request: HttpRequest) -> bool:
    """PostgreSQL stores no NUL character in text or jsonb; refuse it up front (as 422)
    rather than fail in the database. A literal backslash-u0000 in text is refused too."""
    if "\x00" in request.path or "%00" in request.META.get("QUERY_STRING", ""):
        return True
    if request.method in ("POST", "PUT", "PATCH"):
        body = request.body
        return b"\x00" in body or b"\\u0000" in body
    return False


def _api_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """What every API URL gets: no login redirect, no CSRF, size limit, JSON 405s."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refused = _too_large(request)
        if refused is not None:
            return refused
        try:
            has_nul = _has_nul(request)
        except RequestDataTooBig:  # Django's own DATA_UPLOAD_MAX_MEMORY_SIZE is lower
            return errors.error_response(
                413, errors.TOO_LARGE, errors.ERR_TOO_LARGE.format(limit=max_body_bytes())
            )
        if has_nul:
            return errors.error_response(422, errors.VALIDATION_FAILED, errors.ERR_NUL)
        response = view(request, *args, **kwargs)
        if response.status_code == 405 and not response.get("Content-Type", "").startswith(
            "application/json"
        ):
            allowed = response.get("Allow", "")
            response = errors.error_response(
                405,
                errors.METHOD_NOT_ALLOWED,
                errors.ERR_METHOD,
                {"allowed": [m.strip() for m in allowed.split(",") if m.strip()]},
                {"Allow": allowed},
            )
        return response

    wrapper.csrf_exempt = True  # type: ignore[attr-defined]
    return login_not_required(wrapper)


def _not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    return errors.error_response(404, errors.NOT_FOUND, errors.ERR_NOT_FOUND)


class TenureAPI(NinjaAPI):
    def _get_urls(self) -> list[URLPattern | URLResolver]:
        patterns = [p for p in super()._get_urls() if getattr(p, "name", "") != "api-root"]
        patterns.append(re_path(r"^docs/assets/(?P<name>[\w.-]+)$", docs_asset, name="docs-asset"))
        # Unknown paths under /api/v1/ answer with the error body, not the HTML 404 page.
        patterns.append(re_path(r"^.*$", _not_found, name="api-root"))
        for pattern in patterns:
            if isinstance(pattern, URLPattern):
                pattern.callback = _api_view(pattern.callback)
        return patterns


api = TenureAPI(
    title="Tenure API",
    version="1",
    urls_namespace="api-v1",
    description=(
        "Push work items in, read proposals, decisions and executions, report what a "
        "human really did in shadow mode, and read workflow metrics. Authenticate with "
        "`Authorization: Bearer <token>`; every error is "
        '`{"error": {"code", "message", "details"}}`.'
    ),
    auth=TokenAuth(),
    docs=LocalSwagger(),
    parser=StrictJsonParser(),
)
errors.install_exception_handlers(api)

# Each layer owns its routes: ingest (agents), shadow reports (reviews), reads,
# metrics and exports (evidence). The project puts them under one API.
from agents.api import router as work_items_router  # noqa: E402
from agents.gate_api import router as gate_router  # noqa: E402
from evidence.api.export import router as export_router  # noqa: E402
from evidence.api.metrics import router as metrics_router  # noqa: E402
from evidence.api.privacy import router as privacy_router  # noqa: E402
from evidence.api.reads import router as reads_router  # noqa: E402
from reviews.api import router as report_router  # noqa: E402

for _router in (
    work_items_router,
    gate_router,
    reads_router,
    report_router,
    metrics_router,
    export_router,
    privacy_router,
):
    api.add_router("", _router)

__all__ = ["api"]

"""The one htmx helper every app's views use (it sits in the bottom layer so that
each of them can): the page or one of its partials, and ``Vary: HX-Request``.

A view renders the whole page for a normal request and a boosted one, and only the
named partial (Django 6 ``{% partialdef %}``) for an htmx swap, so one template
serves both. Responses that differ by the header say so with ``Vary``, patched
(never overwritten: the session and CSRF middleware add their own).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers


def wants_partial(request: HttpRequest) -> bool:
    """An htmx swap (not a boosted navigation): answer with a fragment."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx and not htmx.boosted)


def page_or_partial(request: HttpRequest, template: str, partial: str) -> str:
    """``template`` for a page, ``template#partial`` for an htmx swap."""
    return f"{template}#{partial}" if wants_partial(request) else template


def vary_on_htmx(response: HttpResponse) -> HttpResponse:
    patch_vary_headers(response, ("HX-Request",))
    return response

"""The project's own pages: the 404 page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 with the reason when there is one for people ("There is no workflow called
    …"); an unknown address says so, not the resolver's exception name."""
    reason = exception.args[0] if exception.args and isinstance(exception.args[0], str) else ""
    return render(request, "404.html", {"exception": reason}, status=404)

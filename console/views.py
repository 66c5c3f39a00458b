"""The project's own pages: the 400 and 404 pages."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 with the reason when there is one for people ("There is no workflow called
    …"); an unknown address says so, not the resolver's exception name."""
    reason = exception.args[0] if exception.args and isinstance(exception.args[0], str) else ""
    return render(request, "404.html", {"exception": reason}, status=404)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """400 with the reason (a NUL character in the address, a malformed request)."""
    reason = exception.args[0] if exception.args and isinstance(exception.args[0], str) else ""
    return render(request, "400.html", {"exception": reason}, status=400)

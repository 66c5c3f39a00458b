"""The floor: the least a Django page can do here. One row by primary key and a
trivial template, behind the same middleware (session, login, CSRF, CSP) as every
console page, so a Tenure request's p50 divided by this one's is the cost of Tenure."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from agents.models import WorkItem


def floor(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(WorkItem.objects.only("pk", "external_id", "status"), pk=pk)
    return render(request, "bench_floor.html", {"item": item})

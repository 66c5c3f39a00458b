"""Prometheus ``/metrics``: computed from the database at scrape time.

The numbers live in PostgreSQL, not in process memory, so any web replica
answers a scrape with the same values and nothing is lost on restart. A scrape
runs a fixed number of grouped queries whatever the number of rows or
workflows. Totals (tokens, cost, tool errors, budget trips) are exposed as
counters; a retention purge lowers them, which Prometheus reads as a reset.

Access: ``Authorization: Bearer $TENURE_METRICS_TOKEN``. With no token set,
only direct loopback requests are served (a request that came through a proxy,
one with X-Forwarded-For, is refused).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterator
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.db.models import Count, Min, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agents.models import Execution, Run, Step, WorkItem
from agents.tasks import HEARTBEAT_KEY
from evidence import metrics
from governance.models import AutonomyLevel, Workflow

ERR_TOKEN_REQUIRED = "Send the metrics token: Authorization: Bearer <TENURE_METRICS_TOKEN>.\n"  # noqa: S105 - a message or a name, not a secret
ERR_LOOPBACK_ONLY = "Metrics are served to loopback only until TENURE_METRICS_TOKEN is set.\n"

ZERO = Decimal("0")


def metrics_token() -> str:
    return str(
        getattr(settings, "TENURE_METRICS_TOKEN", "") or os.environ.get("TENURE_METRICS_TOKEN", "")
    )


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def scrape_allowed(request: HttpRequest) -> tuple[bool, int, str]:
    """(allowed, status if not, message if not)."""
    expected = metrics_token()
    if expected:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            presented.strip().encode(), expected.encode()
        ):
            return True, 200, ""
        return False, 401, ERR_TOKEN_REQUIRED
    proxied = "HTTP_X_FORWARDED_FOR" in request.META or "HTTP_FORWARDED" in request.META
    if _is_loopback(request.META.get("REMOTE_ADDR", "")) and not proxied:
        return True, 200, ""
    return False, 403, ERR_LOOPBACK_ONLY


def _f(value: Decimal | int | float | None) -> float:
    return float(value or 0)


class TenureCollector(Collector):
    """Every Tenure gauge and counter, read from the database at collect time."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        slugs = dict(Workflow.objects.values_list("pk", "slug"))
        yield from self._workflows()
        backlog = metrics.backlog_for()
        yield from self._queues(slugs, now, backlog)
        yield from self._runs(slugs)
        yield from self._escalations(slugs, backlog)
        yield from self._tool_steps(slugs)
        yield from self._executions(slugs)
        yield from self._heartbeat(now)

    def _workflows(self) -> Iterator[Metric]:
        paused = GaugeMetricFamily(
            "tenure_workflow_paused",
            "1 while the workflow's kill switch is on.",
            labels=["workflow"],
        )
        level = GaugeMetricFamily(
            "tenure_workflow_autonomy_level",
            "Autonomy rung: 0 off, 1 shadow, 2 supervised, 3 limited, 4 autonomous.",
            labels=["workflow"],
        )
        for slug, is_paused, autonomy in Workflow.objects.values_list(
            "slug", "paused", "autonomy_level"
        ):
            paused.add_metric([slug], 1 if is_paused else 0)
            level.add_metric([slug], AutonomyLevel.rank(autonomy))
        yield paused
        yield level

    def _queues(
        self, slugs: dict[int, str], now, backlog: dict[int, metrics.Backlog]
    ) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "tenure_review_queue_depth", "Proposals awaiting review.", labels=["workflow"]
        )
        age = GaugeMetricFamily(
            "tenure_review_queue_oldest_age_seconds",
            "Age of the oldest proposal awaiting review (0 when the queue is empty).",
            labels=["workflow"],
        )
        items = GaugeMetricFamily(
            "tenure_work_items_open", "Work items not yet finished, by status.",
            labels=["workflow", "status"],
        )  # fmt: skip
        items_age = GaugeMetricFamily(
            "tenure_work_items_oldest_received_age_seconds",
            "Age of the oldest work item still waiting for the agent (status received).",
            labels=["workflow"],
        )
        oldest_received: dict[int, object] = {}
        for row in (
            WorkItem.objects.open()
            .values("workflow", "status")
            .annotate(n=Count("pk"), oldest=Min("created_at"))
            .order_by()
        ):
            items.add_metric([slugs.get(row["workflow"], "?"), row["status"]], row["n"])
            if row["status"] == WorkItem.Status.RECEIVED:
                oldest_received[row["workflow"]] = row["oldest"]
        for pk, slug in slugs.items():
            queue = backlog.get(pk, metrics.Backlog())
            depth.add_metric([slug], queue.pending)
            oldest = queue.oldest_pending_at
            age.add_metric([slug], (now - oldest).total_seconds() if oldest else 0)
            oldest = oldest_received.get(pk)
            items_age.add_metric([slug], (now - oldest).total_seconds() if oldest else 0)
        yield depth
        yield age
        yield items
        yield items_age

    def _runs(self, slugs: dict[int, str]) -> Iterator[Metric]:
        by_status = GaugeMetricFamily(
            "tenure_runs", "Agent runs by status.", labels=["workflow", "status"]
        )
        trips = CounterMetricFamily(
            "tenure_budget_trips",
            "Runs stopped by a budget or loop detection, by kind.",
            labels=["workflow", "kind"],
        )
        tokens = CounterMetricFamily(
            "tenure_model_tokens", "Model tokens used by runs.", labels=["workflow", "direction"]
        )
        cost = CounterMetricFamily(
            "tenure_model_cost_usd", "Model cost of runs in USD.", labels=["workflow"]
        )
        tool_cost = CounterMetricFamily(
            "tenure_tool_cost_usd", "Tool cost of runs in USD.", labels=["workflow"]
        )
        rows = (
            Run.objects.values("work_item__workflow", "status", "stop_reason")
            .annotate(
                n=Count("pk"),
                tokens_in=Coalesce(Sum("tokens_in"), 0),
                tokens_out=Coalesce(Sum("tokens_out"), 0),
                cost=Coalesce(Sum("cost_usd"), ZERO),
                tool_cost=Coalesce(Sum("tool_cost_usd"), ZERO),
            )
            .order_by()
        )
        status_n: dict[tuple[str, str], int] = {}
        trip_n: dict[tuple[str, str], int] = {}
        sums: dict[str, list[float]] = {slug: [0.0, 0.0, 0.0, 0.0] for slug in slugs.values()}
        for row in rows:
            slug = slugs.get(row["work_item__workflow"], "?")
            key = (slug, row["status"])
            status_n[key] = status_n.get(key, 0) + row["n"]
            if row["stop_reason"] in Run.BUDGET_REASONS:
                trip = (slug, row["stop_reason"])
                trip_n[trip] = trip_n.get(trip, 0) + row["n"]
            acc = sums.setdefault(slug, [0.0, 0.0, 0.0, 0.0])
            acc[0] += _f(row["tokens_in"])
            acc[1] += _f(row["tokens_out"])
            acc[2] += _f(row["cost"])
            acc[3] += _f(row["tool_cost"])
        for slug in slugs.values():
            for status in Run.Status.values:
                by_status.add_metric([slug, status], status_n.get((slug, status), 0))
            for kind in Run.BUDGET_REASONS:
                trips.add_metric([slug, kind], trip_n.get((slug, kind), 0))
        for slug, (t_in, t_out, usd, tool_usd) in sums.items():
            tokens.add_metric([slug, "in"], t_in)
            tokens.add_metric([slug, "out"], t_out)
            cost.add_metric([slug], usd)
            tool_cost.add_metric([slug], tool_usd)
        yield by_status
        yield trips
        yield tokens
        yield cost
        yield tool_cost

    def _escalations(
        self, slugs: dict[int, str], backlog: dict[int, metrics.Backlog]
    ) -> Iterator[Metric]:
        open_ = GaugeMetricFamily(
            "tenure_escalations_open", "Open escalations.", labels=["workflow"]
        )
        for pk, slug in slugs.items():
            open_.add_metric([slug], backlog.get(pk, metrics.Backlog()).open_escalations)
        yield open_

    def _tool_steps(self, slugs: dict[int, str]) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "tenure_tool_calls", "Tool calls made by the agent.", labels=["workflow", "tool"]
        )
        failures = CounterMetricFamily(
            "tenure_tool_errors", "Tool calls that ended in an error.", labels=["workflow", "tool"]
        )
        for row in (
            Step.objects.filter(kind=Step.Kind.TOOL_CALL)
            .values("run__work_item__workflow", "name")
            .annotate(**metrics.tool_call_counts())
            .order_by()
        ):
            labels = [slugs.get(row["run__work_item__workflow"], "?"), row["name"]]
            calls.add_metric(labels, row["calls"])
            failures.add_metric(labels, row["errors"])
        yield calls
        yield failures

    def _executions(self, slugs: dict[int, str]) -> Iterator[Metric]:
        by_status = GaugeMetricFamily(
            "tenure_executions", "Executions by status.", labels=["workflow", "status"]
        )
        counts = {
            (row["proposal__workflow"], row["status"]): row["n"]
            for row in Execution.objects.values("proposal__workflow", "status")
            .annotate(n=Count("pk"))
            .order_by()
        }
        for pk, slug in slugs.items():
            for status in Execution.Status.values:
                by_status.add_metric([slug, status], counts.get((pk, status), 0))
        yield by_status

    def _heartbeat(self, now) -> Iterator[Metric]:
        age = GaugeMetricFamily(
            "tenure_worker_heartbeat_age_seconds",
            "Seconds since a Celery worker last ran the heartbeat task (-1: none recorded).",
        )
        raw = cache.get(HEARTBEAT_KEY)
        beat = parse_datetime(raw) if isinstance(raw, str) else None
        age.add_metric([], (now - beat).total_seconds() if beat else -1)
        yield age


def render_metrics() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TenureCollector())
    return generate_latest(registry)


@login_not_required
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    allowed, status, message = scrape_allowed(request)
    if not allowed:
        response = HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
        if status == 401:
            response["WWW-Authenticate"] = "Bearer"
        return response
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)

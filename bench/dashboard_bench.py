"""Dashboard bench: server time and SQL queries of the per-workflow dashboard and the
ops overview with a million decisions in PostgreSQL.

Bulk-loads (COPY) ``--size`` decided proposals, each with its work item, run, one
tool-call step and its decision, over the last thirty days into a private
database (dropped and recreated), plus escalations (2% of items, half of them a
day late), their resolutions and a backlog of pending proposals. Three workflows
share the load (80/10/10). Then it rolls the closed days and the open day's closed
hours up as the beat job does (``metric_days_roll``, ``open_hours_roll``), drives
the real views in-process with django.test.Client over a persistent connection,
and prints JSON:

- ``dashboard``: GET /w/<slug>/dashboard/ (30 days) of the biggest workflow;
- ``ops``: GET /ops/ (7 days) and ``ops_30``: GET /ops/?days=30 over the three;
- ``with_indexes`` (``--recommended-indexes``): the same after adding two more
  single-column indexes (Step.created_at, WorkItem.resolved_at); the migrations
  (agents 0005) already create the ones today's slice uses, so this is a check;
- ``before_live``: the pre-rollup computation (workflow_metrics + daily_rollup +
  agreement_by_tool from raw rows) of the same dashboard, timed a few times, and
  checked equal to what the rollups give (``rollup_equals_live``); the open day's
  closed hours as read from the cache checked equal to their raw computation
  (``hours_equal_live``, null before the first hour of the day closes) and the ops
  overview equal to ``ops_overview`` (``ops_equals_live``).

Closed days come from ``MetricDay``, the open day's closed hours from the cache
(``open_hours_read``), and only the last hour or two (``ROLLUP_GRACE``) live from
raw rows, so the cost does not grow through the day. ``--full-today`` puts a whole
day's volume between midnight and now (the cost at 23:59) instead of the real
time of day's share. Each measurement reports the CPU time of this process per
request (``cpu_*``: Django, templates, drivers; PostgreSQL's is not in it) beside
the wall time; ``--profile FILE`` cProfiles (process time) the requests.

    .venv/bin/python bench/dashboard_bench.py                 # 1,000,000 decisions
    .venv/bin/python bench/dashboard_bench.py --quick         # 50,000
    .venv/bin/python bench/dashboard_bench.py --size 200000 --full-today --keep
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdb import configure, recreate_database, reset_sequences  # noqa: E402 - bench/ is on sys.path as the script's folder

SLUGS = (("bench-refunds", 0.8), ("bench-access", 0.1), ("bench-billing", 0.1))
TOOLS = (("create_refund", 6), ("send_message", 3), ("lookup_order", 1))
REASONS = ("wrong_amount", "wrong_record", "missing_context", "unsafe", "policy", "other")
DAYS = 30


def _hash(arguments: dict) -> str:
    return hashlib.sha256(json.dumps(arguments, sort_keys=True).encode()).hexdigest()


def bulk_load(size: int, *, full_today: bool, seed: int = 5) -> dict:
    """COPY ``size`` decisions (and their items, runs, steps, proposals) oldest first,
    so ids follow time as they do in production."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from evidence.metrics import start_of_today
    from governance.models import Workflow

    rng = random.Random(seed)
    workflows = [(Workflow.objects.get(slug=slug).pk, share) for slug, share in SLUGS]
    wf_ids = [pk for pk, _ in workflows]
    wf_weights = [share for _, share in workflows]
    tools = [t for t, _ in TOOLS]
    tool_weights = [w for _, w in TOOLS]
    reviewer = get_user_model().objects.get(username="bench-reviewer").pk
    now = timezone.now() - timedelta(minutes=1)
    midnight = start_of_today(now)
    start = now - timedelta(days=DAYS)
    today_n = size // DAYS if full_today else 0

    def when(i: int) -> datetime:
        if not today_n:
            return start + (now - start) * (i / size)
        if i >= size - today_n:  # a whole day's volume between midnight and now
            return midnight + (now - midnight) * ((i - (size - today_n)) / today_n)
        return start + (midnight - start) * (i / (size - today_n))

    started = time.perf_counter()
    connection.ensure_connection()
    raw = connection.connection
    rows = {"items": 0, "runs": 0, "steps": 0, "proposals": 0, "decisions": 0}
    escalations: list[tuple] = []
    pending = max(1, size // 100)
    plan = []
    for i in range(size):
        at = when(i)
        plan.append(
            (
                at,
                rng.choices(wf_ids, wf_weights)[0],
                rng.choices(tools, tool_weights)[0],
                rng.random(),
                rng.random(),
            )
        )
    with raw.cursor() as cur:
        # The backlog: pending proposals on items received in the last two hours.
        for j in range(pending):
            at = now - timedelta(hours=2) + timedelta(seconds=j % 7000)
            plan.append((at, rng.choices(wf_ids, wf_weights)[0], "create_refund", 1.0, 1.0))

        def items():
            for i, (at, wf, _tool, r1, _r2) in enumerate(plan):
                done = i < size
                resolved = at + timedelta(minutes=4)
                yield (
                    i + 1, wf, f"bench-{i}", "Bench request", '{"text": "Please help."}', "api",
                    "integration:bench", "resolved" if done else "awaiting_review",
                    (r1 < 0.85) if done else None, at, at,
                    resolved if done and resolved < now else None,
                )  # fmt: skip

        with cur.copy(
            "COPY agents_workitem (id, workflow_id, external_id, title, payload, source, "
            "source_principal, status, succeeded, created_at, updated_at, resolved_at) FROM STDIN"
        ) as copy:
            for row in items():
                copy.write_row(row)
        rows["items"] = len(plan)
        with cur.copy(
            "COPY agents_run (id, work_item_id, attempt, status, stop_reason, autonomy_level, "
            "model, agent_version, prompt_version, tokens_in, tokens_out, cost_usd, "
            "tool_cost_usd, tool_calls, retries, cache_hits, cache_misses, wall_ms, state, "
            "created_at, started_at, finished_at) FROM STDIN"
        ) as copy:
            for i, (at, _wf, _tool, r1, r2) in enumerate(plan):
                budget = r2 < 0.01
                copy.write_row(
                    (i + 1, i + 1, 1, "escalated" if budget else "proposed",
                     "budget_tool_calls" if budget else "completed", "shadow", "demo-small",
                     "1", "1", 900, 120, f"0.{(i % 900) + 100:06d}", "0.000050",
                     1 + i % 3, 1 if r1 < 0.05 else 0, 0, 1, 850, "{}", at, at,
                     at + timedelta(seconds=2))
                )  # fmt: skip
        rows["runs"] = len(plan)
        with cur.copy(
            "COPY agents_step (run_id, index, kind, name, input, output, error, is_retry, "
            "cached, model, latency_ms, tokens_in, tokens_out, cost_usd, created_at) FROM STDIN"
        ) as copy:
            for i, (at, _wf, tool, _r1, r2) in enumerate(plan[:size]):
                copy.write_row(
                    (i + 1, 1, "tool_call", tool, "{}", "{}",
                     "HTTP 502" if 0.5 < r2 < 0.53 else "", False, False, "", 120, 0, 0, "0",
                     at + timedelta(seconds=1))
                )  # fmt: skip
        rows["steps"] = size
        with cur.copy(
            "COPY agents_proposal (id, run_id, workflow_id, work_item_id, sequence, tool, "
            "arguments, arguments_hash, rationale, citations, risk_class, verdict, verdict_rule, "
            "injection_flags, flagged_injection, autonomy_level, status, auto_executed, "
            "sampled_for_review, priority, created_at, decided_at) FROM STDIN"
        ) as copy:
            for i, (at, wf, tool, r1, _r2) in enumerate(plan):
                args = {"order_number": f"A-{i}", "amount": "42.00", "reason": "damaged"}
                done = i < size
                verdict = "reject" if r1 > 0.9 else "edit" if r1 > 0.8 else "accept"
                status = {"reject": "rejected", "edit": "edited", "accept": "accepted"}[verdict]
                copy.write_row(
                    (i + 1, i + 1, wf, i + 1, 1, tool, json.dumps(args), _hash(args),
                     "Bench.", "[]", "money", "needs_approval", "Needs approval.", "[]", False,
                     "shadow", status if done else "pending", False, False, 0, at,
                     at + timedelta(minutes=3) if done else None)
                )  # fmt: skip
        rows["proposals"] = len(plan)
        with cur.copy(
            "COPY reviews_decision (proposal_id, reviewer_id, kind, verdict, final_arguments, "
            "final_arguments_hash, diff, reason, reason_text, autonomy_level, seconds_spent, "
            "created_at) FROM STDIN"
        ) as copy:
            for i, (at, _wf, _tool, r1, _r2) in enumerate(plan[:size]):
                verdict = "reject" if r1 > 0.9 else "edit" if r1 > 0.8 else "accept"
                final = {"amount": "40.00"} if verdict == "edit" else {}
                copy.write_row(
                    (i + 1, reviewer, "review", verdict, json.dumps(final),
                     _hash(final) if final else "",
                     '{"amount": ["42.00", "40.00"]}' if final else "{}",
                     REASONS[i % len(REASONS)] if verdict == "reject" else "", "", "shadow",
                     20 + i % 60, min(at + timedelta(minutes=3), now))
                )  # fmt: skip
        rows["decisions"] = size
        for i, (at, wf, _tool, _r1, r2) in enumerate(plan[:size]):
            if r2 < 0.02:
                late = timedelta(days=1) if r2 < 0.01 else timedelta(seconds=90)
                escalations.append((wf, i + 1, i + 1, min(at + late, now)))
        with cur.copy(
            "COPY agents_escalation (id, workflow_id, work_item_id, run_id, reason, detail, "
            "packet, status, created_at) FROM STDIN"
        ) as copy:
            for k, (wf, item, run, at) in enumerate(escalations):
                copy.write_row(
                    (k + 1, wf, item, run, "hard_case", "", "{}",
                     "resolved" if k % 2 else "open", at)
                )  # fmt: skip
        with cur.copy(
            "COPY reviews_escalationresolution (escalation_id, reviewer_id, outcome, note, "
            "action_taken, packet_rating, minutes_saved, seconds_spent, created_at) FROM STDIN"
        ) as copy:
            for k, (_wf, _item, _run, at) in enumerate(escalations):
                if k % 2:
                    copy.write_row(
                        (k + 1, reviewer, "closed", "", "{}", 1 + k % 5, k % 30, 60,
                         min(at + timedelta(minutes=20), now))
                    )  # fmt: skip
        rows["escalations"] = len(escalations)
        reset_sequences(
            cur,
            (
                "agents_workitem",
                "agents_run",
                "agents_step",
                "agents_proposal",
                "reviews_decision",
                "agents_escalation",
                "reviews_escalationresolution",
            ),
        )
    raw.commit()
    load_s = time.perf_counter() - started
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return {
        **rows,
        "today_rows": sum(1 for at, *_ in plan[:size] if at >= midnight),
        "copy_seconds": round(load_s, 1),
        "analyze_seconds": round(time.perf_counter() - t0, 1),
    }


def summary(seconds: list[float]) -> dict:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(ms[max(0, math.ceil(len(ms) * 0.95) - 1)], 1),
        "max_ms": round(ms[-1], 1),
    }


def measure(client, url: str, requests: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(5):
        assert client.get(url).status_code == 200
    times, cpu = [], []
    for _ in range(requests):
        t0, c0 = time.perf_counter(), time.process_time()
        response = client.get(url)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        assert response.status_code == 200, response.status_code
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    # CPU of this process (Django, templates, drivers), not PostgreSQL's: steadier than
    # wall time on a shared machine.
    cpu_ms = sorted(c * 1000 for c in cpu)
    return {
        **summary(times),
        "cpu_p50_ms": round(statistics.median(cpu_ms), 1),
        "cpu_mean_ms": round(statistics.fmean(cpu_ms), 1),
        "queries": len(queries),
    }


def profile(client, urls: list[str], requests: int, path: str) -> None:
    """cProfile (process time) of ``requests`` GETs of each URL; stats saved to
    ``path`` and the top functions by own time printed to stderr."""
    import cProfile
    import pstats

    profiler = cProfile.Profile(time.process_time)
    for url in urls:
        for _ in range(requests):
            profiler.enable()
            response = client.get(url)
            profiler.disable()
            assert response.status_code == 200, response.status_code
    profiler.dump_stats(path)
    stats = pstats.Stats(path, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)


# Today's slice of two metrics has no index to bound it in the tree today: tool
# errors (Step.created_at) and outcomes (WorkItem.resolved_at) are sequential
# scans. These are the indexes the report recommends to agents/.
RECOMMENDED_INDEXES = (
    "CREATE INDEX IF NOT EXISTS bench_step_created_at ON agents_step (created_at)",
    "CREATE INDEX IF NOT EXISTS bench_workitem_resolved "
    "ON agents_workitem (workflow_id, resolved_at)",
)


def with_indexes(client, requests: int) -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        for sql in RECOMMENDED_INDEXES:
            cursor.execute(sql)
        cursor.execute("ANALYZE agents_step")
        cursor.execute("ANALYZE agents_workitem")
    return {
        "indexes": list(RECOMMENDED_INDEXES),
        "dashboard": measure(client, f"/w/{SLUGS[0][0]}/dashboard/", requests),
        "ops": measure(client, "/ops/", requests),
        "ops_30": measure(client, "/ops/?days=30", requests),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def before_live(workflow, repeats: int) -> dict:
    """The pre-rollup dashboard computation, and a check that the rollups agree."""
    from django.utils import timezone

    from evidence import metrics

    now = timezone.now()
    since = metrics.start_of_today(now) - timedelta(days=DAYS - 1)
    scope = metrics.Scope.for_workflow(workflow, since=since)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        live = metrics.workflow_metrics(scope, workflow)
        daily = metrics.daily_rollup(scope, now=now)
        by_tool = metrics.agreement_by_tool(scope)
        times.append(time.perf_counter() - t0)
    board = metrics.dashboard_metrics(workflow, since=since, now=now)
    rolled = board.metrics
    hours, ops = hours_equal_live(now), ops_equals_live(now)
    same = (
        rolled.agreement == live.agreement
        and rolled.cost == live.cost
        and rolled.reject_reasons == live.reject_reasons
        and rolled.field_agreement == live.field_agreement
        and (rolled.received, rolled.escalated_items, rolled.escalations)
        == (live.received, live.escalated_items, live.escalations)
        and (rolled.runs, rolled.retried_runs, rolled.budget_trips)
        == (live.runs, live.retried_runs, live.budget_trips)
        and rolled.tool_errors == live.tool_errors
        and (rolled.resolved, rolled.succeeded, rolled.resolutions)
        == (live.resolved, live.succeeded, live.resolutions)
        and board.daily == daily
        and board.agreement_by_tool == by_tool
    )
    return {
        **summary(times),
        "rollup_equals_live": same,
        "hours_equal_live": hours,
        "ops_equals_live": ops,
        "decisions": live.decisions,
    }


def hours_equal_live(now) -> bool | None:
    """The open day's closed hours as the dashboards read them (from the cache) are
    the raw computation of that range; None when no hour of the open day is closed."""
    from evidence import metrics
    from evidence.metrics.open_day import OPEN_COLUMNS
    from evidence.metrics.rollups import midnight
    from governance.models import Workflow

    start = midnight(metrics.last_closed_day(now) + timedelta(days=1))
    until = metrics.last_closed_hour(now)
    if until <= start:
        return None
    workflows = list(Workflow.objects.all())
    cached = metrics.open_hours_read(workflows, start=start, until=until)
    raw = metrics.metric_days_compute([w.pk for w in workflows], since=start, until=until)

    def columns(rows) -> list[tuple]:
        return sorted(
            (r.workflow_id, r.day, r.tool, *(getattr(r, c) for c in OPEN_COLUMNS)) for r in rows
        )

    return columns(metrics.metric_rows_merge(cached)) == columns(raw.values())


def ops_equals_live(now) -> bool:
    """The ops overview from rollups equals its raw computation (7 and 30 days)."""
    from evidence import metrics
    from governance.models import Workflow

    workflows = Workflow.objects.order_by("name")
    for days in (7, 30):
        since = metrics.start_of_today(now) - timedelta(days=days - 1)
        rows, daily = metrics.ops_overview_rolled(workflows, since=since, now=now)
        live = metrics.ops_overview(workflows, since=since, now=now)
        fields = ("today_usd", "week_usd", "cost", "budget_trips", "pending", "escalations")
        if [[getattr(r, f) for f in fields] for r in rows] != [
            [getattr(r, f) for f in fields] for r in live
        ]:
            return False
        scope = metrics.Scope(workflow_ids=tuple(w.pk for w in workflows), since=since)
        spend = [(d.day, d.spend_usd) for d in metrics.daily_rollup(scope, now=now)]
        if [(d.day, d.spend_usd) for d in daily] != spend:
            return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="50,000 decisions")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--before", type=int, default=2, help="live-computation repeats")
    parser.add_argument("--full-today", action="store_true")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="cProfile (process time) the dashboard and ops requests into FILE",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="measure a database kept by --keep")
    parser.add_argument(
        "--recommended-indexes",
        action="store_true",
        help="then add the indexes recommended for agents/ and measure again",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tenure_bench_h3"
        ),
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    options = parser.parse_args()
    size = 50_000 if options.quick else options.size

    configure(options.database_url, options.redis_url)
    if not options.reuse:
        recreate_database(options.database_url)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from governance.models import AutonomyLevel, Workflow

    call_command("migrate", verbosity=0)
    if options.reuse:  # measure a database a --keep run left, as the tree has it
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX IF EXISTS bench_step_created_at, bench_workitem_resolved")
        return run(options, size=None)
    for slug, _ in SLUGS:
        Workflow.objects.create(
            slug=slug, name=slug.replace("-", " ").title(), autonomy_level=AutonomyLevel.SHADOW
        )
    user_model = get_user_model()
    user_model.objects.create(username="bench-reviewer")
    user_model.objects.create_superuser("bench-admin", "admin@example.com", "x" * 20)
    load = bulk_load(size, full_today=options.full_today)
    print(json.dumps(load), file=sys.stderr, flush=True)
    return run(options, size=size, load=load)


def run(options, *, size: int | None, load: dict | None = None) -> int:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from evidence import metrics
    from governance.models import Workflow
    from reviews.models import Decision

    size = size or Decision.objects.count()
    admin = get_user_model().objects.get(username="bench-admin")
    result: dict = {"bench": "dashboard", "size": size, "full_today": options.full_today}
    result["load"] = load or {"reused": options.database_url}

    t0 = time.perf_counter()
    result["rolled_days"] = metrics.metric_days_roll(days=DAYS + 5)
    result["roll_seconds"] = round(time.perf_counter() - t0, 1)
    # The beat job then rolls the open day's closed hours (metric_rollup_task).
    t0 = time.perf_counter()
    metrics.open_hours_roll()
    result["roll_hours_seconds"] = round(time.perf_counter() - t0, 2)
    live_since = metrics.last_closed_hour(timezone.now())
    result["live_slice_decisions"] = Decision.objects.filter(created_at__gte=live_since).count()
    print(json.dumps({"roll_seconds": result["roll_seconds"]}), file=sys.stderr, flush=True)

    client = Client()
    client.force_login(admin)
    main_slug = SLUGS[0][0]
    result["dashboard"] = measure(client, f"/w/{main_slug}/dashboard/", options.requests)
    result["ops"] = measure(client, "/ops/", options.requests)
    result["ops_30"] = measure(client, "/ops/?days=30", options.requests)
    result["loadavg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result), file=sys.stderr, flush=True)
    if options.profile:
        urls = [f"/w/{main_slug}/dashboard/", "/ops/", "/ops/?days=30"]
        profile(client, urls, options.requests, options.profile)
    if options.recommended_indexes:
        result["with_indexes"] = with_indexes(client, options.requests)
    if options.before:
        result["before_live"] = before_live(Workflow.objects.get(slug=main_slug), options.before)
    print(json.dumps(result, indent=2))
    if not options.keep:
        from django.db import connections

        connections.close_all()
        recreate_database(options.database_url, drop_only=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

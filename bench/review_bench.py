"""Review-queue bench: server time and SQL queries per request at two queue sizes.

Bulk-loads proposals (COPY) into a separate PostgreSQL database, then drives the
real views in-process with django.test.Client over persistent connections:

- ``queue_page``: GET /w/<slug>/queue/ (claim or renew, card, list, live counts);
- ``decide_next``: POST .../decide/ with HX-Request (decide, audit, plan dispatch,
  claim the next proposal, render the next card with the counts and list out of band);
- ``nav_counts``: GET /nav/counts/ (console's navigation counter, for reference).

Every proposal is pending (the worst case for the queue indexes); each work item
carries a plan of two proposals and a three-step trace.

    .venv/bin/python bench/review_bench.py --sizes 1000 1000000 --requests 300

``cpu_ms`` is the process's CPU time per request (``time.process_time``, which counts
the audit sealer thread too; ``request_thread_cpu_ms`` does not): steadier than wall
time on a shared machine. ``--profile FILE`` runs ``--requests`` more decide-next
requests under cProfile (CPU time) and writes the stats to FILE, the top functions to
stderr; ``--show-queries`` prints each measured request's SQL. With ``--profile`` the
smallest size needs more than twice ``--requests`` proposals.

Prints JSON. The database (default ``tenure_bench``) is dropped and recreated.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdb import configure, recreate_database, reset_sequences  # noqa: E402 - bench/ is on sys.path as the script's folder

TOKEN_RE = re.compile(r'name="token" value="([0-9a-f-]{36})"')
PROPOSAL_RE = re.compile(r'data-proposal="(\d+)"')
SLUG = "bench-refunds"
ARGS = '{"order_number": "A-1001", "amount": "42.00", "reason": "Arrived broken"}'


def truncate() -> None:
    from django.db import connection

    tables = [
        "reviews_claim",
        "reviews_decision",
        "reviews_escalationresolution",
        "agents_step",
        "agents_proposal",
        "agents_escalation",
        "agents_run",
        "agents_workitem",
        "console_auditevent",
        "console_auditchain",
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def bulk_load(workflow, size: int) -> float:
    """COPY ``size`` pending proposals (plans of two), their work items, runs and traces."""
    from django.db import connection
    from django.utils import timezone

    started = time.perf_counter()
    items = (size + 1) // 2
    base = timezone.now() - timedelta(seconds=size + 60)
    connection.ensure_connection()
    raw = connection.connection
    with raw.cursor() as cursor:
        with cursor.copy(
            "COPY agents_workitem (id, workflow_id, external_id, title, payload, source, "
            "source_principal, status, created_at, updated_at) FROM STDIN"
        ) as copy:
            for i in range(1, items + 1):
                at = base + timedelta(seconds=2 * i)
                copy.write_row(
                    (
                        i,
                        workflow.pk,
                        f"ext-{i}",
                        f"Refund request {i}",
                        '{"text": "Please refund order A-1001, it arrived broken."}',
                        "api",
                        "bench",
                        "awaiting_review",
                        at,
                        at,
                    )
                )
        with cursor.copy(
            "COPY agents_run (id, work_item_id, attempt, status, stop_reason, autonomy_level, "
            "model, agent_version, prompt_version, tokens_in, tokens_out, cost_usd, "
            "tool_cost_usd, tool_calls, retries, cache_hits, cache_misses, wall_ms, state, "
            "created_at) FROM STDIN"
        ) as copy:
            for i in range(1, items + 1):
                copy.write_row(
                    (i, i, 1, "proposed", "completed", "shadow", "demo-small", "1", "1", 900,
                     120, "0.000207", "0", 2, 0, 0, 1, 850, "{}", base + timedelta(seconds=2 * i))
                )  # fmt: skip
        with cursor.copy(
            "COPY agents_step (run_id, index, kind, name, input, output, error, is_retry, "
            "cached, model, latency_ms, tokens_in, tokens_out, cost_usd, created_at) FROM STDIN"
        ) as copy:
            for i in range(1, items + 1):
                at = base + timedelta(seconds=2 * i)
                for index, kind, name, latency in (
                    (1, "model_call", "demo-small", 310),
                    (2, "tool_call", "lookup_order", 12),
                    (3, "policy", "refund_cap", 1),
                ):
                    copy.write_row(
                        (i, index, kind, name, '{"input": "<data>..."}', '{"output": "ok"}', "",
                         False, False, "", latency, 900 if index == 1 else 0,
                         120 if index == 1 else 0, "0.000207" if index == 1 else "0", at)
                    )  # fmt: skip
        with cursor.copy(
            "COPY agents_proposal (id, run_id, workflow_id, work_item_id, sequence, tool, "
            "arguments, arguments_hash, rationale, citations, risk_class, verdict, verdict_rule, "
            "injection_flags, flagged_injection, autonomy_level, status, auto_executed, "
            "sampled_for_review, priority, created_at) FROM STDIN"
        ) as copy:
            for n in range(1, size + 1):
                item = (n + 1) // 2
                sequence = 1 if n % 2 else 2
                tool = "create_refund" if sequence == 1 else "send_message"
                # A few high-priority items (near SLA / high risk), as in real queues.
                priority = 2 if n % 97 == 0 else 0
                copy.write_row(
                    (n, item, workflow.pk, item, sequence, tool, ARGS, "0" * 64,
                     "The customer reports damage; the total covers it.", "[]", "money",
                     "needs_approval", "Refunds need approval in shadow mode.", "[]", n % 50 == 0,
                     "shadow", "pending", False, False, priority,
                     base + timedelta(seconds=2 * item, microseconds=sequence))
                )  # fmt: skip
        reset_sequences(cursor, ("agents_workitem", "agents_run", "agents_step", "agents_proposal"))
    raw.commit()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return time.perf_counter() - started


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
    }


def calibrate() -> dict:
    """How busy the machine is: the figures mean little without it on shared cores."""
    from django.db import connection

    t0 = time.perf_counter()
    sum(range(1_000_000))
    python_ms = (time.perf_counter() - t0) * 1000
    samples = []
    with connection.cursor() as cursor:
        for _ in range(200):
            t0 = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            samples.append(time.perf_counter() - t0)
    commits = []
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS bench_probe (x int)")
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_commit_probe (x int)")
        for _ in range(50):
            t0 = time.perf_counter()
            cursor.execute("INSERT INTO bench_commit_probe VALUES (1)")  # autocommit: fsync
            commits.append(time.perf_counter() - t0)
    return {
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "durable_commit": summary(commits),
        "cpus": os.cpu_count(),
        "python_sum_1e6_ms": round(python_ms, 1),
        "select_1": summary(samples),
    }


class QueryLog:
    """Counts (and keeps) the SQL a request runs: an execute wrapper sees every
    statement whatever the connection's debug log holds (CaptureQueriesContext
    read 0 queries in this script)."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        self.statements.append(sql)
        return execute(sql, params, many, context)

    def __len__(self) -> int:
        return len(self.statements)


def measure(reviewer, requests: int, profile: str = "", show_queries: bool = False) -> dict:
    from django.db import connection
    from django.test import Client, override_settings

    client = Client()
    client.force_login(reviewer)
    queue_url = f"/w/{SLUG}/queue/"

    def queue_page():
        response = client.get(queue_url)
        assert response.status_code == 200, response.status_code
        return response.content.decode()

    html = queue_page()
    for _ in range(20):  # warm up templates, connections, caches
        html = queue_page()
        client.get("/nav/counts/")
    queue_times = []
    cpu0 = time.process_time()
    for _ in range(requests):
        t0 = time.perf_counter()
        html = queue_page()
        queue_times.append(time.perf_counter() - t0)
    queue_cpu = (time.process_time() - cpu0) / requests
    queue_queries = QueryLog()
    with connection.execute_wrapper(queue_queries):
        html = queue_page()

    nav_times = []
    for _ in range(max(20, requests // 5)):
        t0 = time.perf_counter()
        client.get("/nav/counts/")
        nav_times.append(time.perf_counter() - t0)

    def decide(page: str):
        token = TOKEN_RE.search(page).group(1)
        proposal = PROPOSAL_RE.search(page).group(1)
        response = client.post(
            f"/w/{SLUG}/queue/{proposal}/decide/",
            {"verdict": "accept", "token": token},
            HTTP_HX_REQUEST="true",
        )
        assert response.status_code == 200, response.status_code
        body = response.content.decode()
        assert "Recorded:" in body, body[:500]
        return body

    for _ in range(10):
        html = decide(html)
    decide_times = []
    cpu0, thread0 = time.process_time(), time.thread_time()
    for _ in range(requests):
        t0 = time.perf_counter()
        html = decide(html)
        decide_times.append(time.perf_counter() - t0)
    decide_cpu = (time.process_time() - cpu0) / requests
    decide_thread = (time.thread_time() - thread0) / requests
    # Two decisions in a row: a plan has two actions, so one of them completes its
    # plan (and resolves the work item: one statement more) and the other does not.
    decide_counts = []
    for _ in range(2):
        decide_queries = QueryLog()
        with connection.execute_wrapper(decide_queries):
            html = decide(html)
        decide_counts.append(len(decide_queries))
    if show_queries:
        for name, log in (("queue_page", queue_queries), ("decide_next", decide_queries)):
            print(f"--- {name}: {len(log)} queries", file=sys.stderr)
            for sql in log.statements:
                print(f"  {sql[:300]}", file=sys.stderr)
    if profile:
        # CPU time, not wall time: the machine is shared, and the question is where
        # the request spends its cycles (waits on PostgreSQL do not count). Python
        # 3.12+ profiles every thread at once, so the audit sealer thread's frames
        # would tangle with the request's: seal in the request thread while
        # profiling (its cost shows up as audit_seal, under the commit).
        time.sleep(0.2)  # let the sealer thread finish what it has
        profiler = cProfile.Profile(time.process_time)
        sealing = override_settings(TENURE_AUDIT_SEAL="commit")
        sealing.enable()
        profiler.enable()
        for _ in range(requests):
            html = decide(html)
        profiler.disable()
        sealing.disable()
        profiler.dump_stats(profile)
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs()
        stats.sort_stats("cumulative").print_stats(60)
        stats.sort_stats("tottime").print_stats(40)
        print(out.getvalue(), file=sys.stderr)
    return {
        "queue_page": {
            **summary(queue_times),
            "cpu_ms": round(queue_cpu * 1000, 2),
            "queries": len(queue_queries),
        },
        "decide_next": {
            **summary(decide_times),
            "cpu_ms": round(decide_cpu * 1000, 2),
            "request_thread_cpu_ms": round(decide_thread * 1000, 2),
            "queries": len(decide_queries),
            "queries_by_plan_position": sorted(decide_counts),
        },
        "nav_counts_console": summary(nav_times),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 1_000_000])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tenure_bench"
        ),
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument(
        "--profile",
        default="",
        metavar="FILE",
        help="cProfile more decide-next requests (CPU time) and write the stats to FILE",
    )
    parser.add_argument(
        "--show-queries", action="store_true", help="print each measured request's SQL"
    )
    options = parser.parse_args()

    configure(options.database_url, options.redis_url)
    recreate_database(options.database_url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    from governance.models import AutonomyLevel, ToolGrant, Workflow
    from governance.permissions import Role, roles_ensure, workflow_grant_role

    roles = roles_ensure()
    results = []
    for size in options.sizes:
        truncate()
        workflow, _ = Workflow.objects.get_or_create(
            slug=SLUG, defaults={"name": "Bench refunds", "autonomy_level": AutonomyLevel.SHADOW}
        )
        for tool in ("create_refund", "send_message"):
            ToolGrant.objects.get_or_create(workflow=workflow, tool=tool)
        reviewer, created = get_user_model().objects.get_or_create(username="bench-reviewer")
        if created:
            reviewer.set_password(uuid.uuid4().hex)
            reviewer.save()
            reviewer.groups.add(roles[Role.REVIEWER])
            workflow_grant_role(user=reviewer, workflow=workflow, role=Role.REVIEWER)
        load_seconds = bulk_load(workflow, size)
        result = {"proposals": size, "load_seconds": round(load_seconds, 1)}
        result["machine_before"] = calibrate()
        result.update(measure(reviewer, options.requests, options.profile, options.show_queries))
        result["machine_after"] = calibrate()
        results.append(result)
        print(json.dumps(result), file=sys.stderr, flush=True)
    print(json.dumps({"bench": "review_queue", "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

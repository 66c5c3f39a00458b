"""Agent runtime bench (not a timed test). Prints a JSON summary.

    .venv/bin/python bench/runtime_bench.py [--calls 400] [--runs 60] [--cycles 150]
        [--cycles-only] [--approve decide|direct|service] [--async-commit]
        [--show-queries] [--profile FILE]

Uses its own PostgreSQL database (dropped and re-created, default ``tenure_bench_runtime``)
and Redis database 12, with Celery in eager mode so a cycle's execute_action runs inline.

Measures:
- runner overhead per tool call: argument validation + policy + trace write + budget
  check (``Runner.handle_call`` on a side-effecting tool, no model);
- shadow runs per second on one process with the deterministic demo model, and with
  the stub OpenAI-compatible server (the real openai client over HTTP, 3 model calls a run);
- the human-in-the-loop cycle excluding the model: claim a run, propose (validate,
  policy, trace), persist the proposal (+ audit), approve it (Decision + plan dispatch)
  and execute it (Execution row + idempotent sandbox side effect + audit). Each phase is
  timed on its own (execute_action is collected at the approval's commit and run right
  after, instead of inside the commit hook), and one warm cycle's queries and durable
  commits are counted per phase (``per_phase_counts``; ``--show-queries`` prints them).
  The approval is the console's (``proposal_decide``) on the card the reviewer's
  ``claim_next`` served; the claim (opening the card) is timed apart as ``review_claim``
  and is not part of the cycle. ``--approve decide`` claims the card with
  ``claim_proposal`` (opened from the list); ``--approve direct`` writes the Decision
  itself through the ORM and calls ``plan_dispatch_ready``. ``client_cpu_ms`` covers the
  whole loop, the claim included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DB_NAME = os.environ.get("TENURE_BENCH_DB", "tenure_bench_runtime")
PG = os.environ.get("TENURE_BENCH_PG", "postgres://postgres@127.0.0.1:5432")
os.environ["DATABASE_URL"] = f"{PG}/{DB_NAME}"
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/12")
# A fresh prefix per run: the bench starts cold and never flushes anyone else's keys.
os.environ["CACHE_KEY_PREFIX"] = f"tenure-bench-{os.getpid()}-{int(time.time())}"
os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret-" + "x" * 40)
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "1"
os.environ["OPENAI_API_KEY"] = ""
os.environ["OPENAI_BASE_URL"] = ""
os.environ["LOG_LEVEL"] = "WARNING"
os.environ["DJANGO_SETTINGS_MODULE"] = "console.settings"
# Direct connections, as in the compose file: prepared statements on.
os.environ.setdefault("DATABASE_PREPARE_THRESHOLD", "5")


def recreate_database(*, async_commit: bool) -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
        setting = "off" if async_commit else "on"
        conn.execute(f'ALTER DATABASE "{DB_NAME}" SET synchronous_commit = {setting}')


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 0.50), 3),
        "p95_ms": round(pct(ms, 0.95), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--cycles", type=int, default=150)
    parser.add_argument("--max-seconds", type=float, default=240)
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="run with synchronous_commit=off on the bench database, to separate the "
        "code's cost from the disk's fsync latency",
    )
    parser.add_argument("--cycles-only", action="store_true", help="skip sections 1 and 2")
    parser.add_argument(
        "--approve",
        choices=("service", "decide", "direct"),
        default="service",
        help="service: the reviewer's keyboard loop, claim_next (timed apart as "
        "review_claim) then the console's decision (proposal_decide); decide: the same "
        "decision on a card opened from the list (claim_proposal); direct: the bench's "
        "own Decision row + plan_dispatch_ready (ORM)",
    )
    parser.add_argument("--profile", default="", help="write a cProfile of the cycles to this file")
    parser.add_argument(
        "--show-queries", action="store_true", help="print one warm cycle's SQL, by phase"
    )
    opts = parser.parse_args()
    if opts.cycles_only:
        opts.calls, opts.runs = 5, 1

    recreate_database(async_commit=opts.async_commit)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    call_command("migrate", verbosity=0)

    from agents.models import Execution, Proposal, WorkItem
    from agents.runner import Runner, run_claim, run_work_item
    from agents.services import plan_dispatch_ready
    from agents.tools import arguments_hash
    from demo.models import SandboxOrder
    from demo.workflows import REFUNDS, demo_seed
    from governance.models import AutonomyLevel, ToolGrant, Workflow
    from reviews.models import Decision

    started = time.monotonic()

    def out_of_time() -> bool:
        return time.monotonic() - started > opts.max_seconds

    # --- Setup: a supervised refunds workflow and a deep order -------------------------------
    workflow = Workflow.objects.create(
        slug="bench-refunds",
        name="Bench refunds",
        autonomy_level=AutonomyLevel.SUPERVISED,
        max_tool_calls=1_000_000,
        max_tokens=10**9,
        max_seconds=3600,
        max_cost_usd=Decimal("1000"),
        loop_threshold=1000,
        policy={"caps": {"create_refund": {"amount": 200}}},
    )
    for tool in ("get_order", "create_refund"):
        ToolGrant.objects.create(
            workflow=workflow, tool=tool, autonomy_level=AutonomyLevel.SUPERVISED
        )
    SandboxOrder.objects.create(
        number="A-9999",
        customer_name="Bench Customer",
        customer_email="bench@example.com",
        total=Decimal("99999999.00"),
        placed_at=timezone.now(),
    )

    def new_runner(external_id: str) -> Runner:
        item = WorkItem.objects.create(
            workflow=workflow,
            external_id=external_id,
            payload={"text": "Order A-9999 arrived broken, please refund."},
            source=WorkItem.Source.COMMAND,
        )
        run = run_claim(work_item_id=item.pk)
        return Runner(run)

    def refund_args(i: int) -> str:
        cents = 100 + i % 10_000
        return json.dumps(
            {
                "order_number": "A-9999",
                "amount": f"{cents // 100}.{cents % 100:02d}",
                "reason": "bench",
            }
        )

    # --- 0. The floor: one small durable commit on this machine --------------------------------
    commit_ms: list[float] = []
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_commit (id serial primary key, v int)")
    for i in range(100):
        t0 = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("INSERT INTO bench_commit (v) VALUES (%s)", [i])
        commit_ms.append((time.perf_counter() - t0) * 1000)

    # --- 1. Runner overhead per tool call --------------------------------------------------
    runner = new_runner("overhead")
    for i in range(20):  # warm up
        runner.handle_call("create_refund", refund_args(i))
    overhead: list[float] = []
    flushes: list[float] = []
    for i in range(opts.calls):
        runner.state.candidates.clear()
        args = refund_args(1000 + i)
        t0 = time.perf_counter()
        runner.handle_call("create_refund", args)
        overhead.append((time.perf_counter() - t0) * 1000)
        if i % 5 == 4:  # the trace reaches the database in bulk, once per model turn
            t0 = time.perf_counter()
            runner.flush_steps()
            flushes.append((time.perf_counter() - t0) * 1000)
        if out_of_time():
            break
    read_overhead: list[float] = []
    for _ in range(min(opts.calls, 200)):
        runner.budget.calls.clear()
        t0 = time.perf_counter()
        runner.handle_call("get_order", json.dumps({"order_number": "A-9999"}))
        read_overhead.append((time.perf_counter() - t0) * 1000)
        if out_of_time():
            break

    # --- 2. Shadow runs per second with the demo model ----------------------------------------
    from agents import queue

    send, queue.send = queue.send, lambda name, *args: True
    try:  # seed without running: the timed loop below runs each item once, cold
        with transaction.atomic():
            demo_seed(items_per_workflow=max(10, opts.runs // 3 + 1))
    finally:
        queue.send = send
    items = list(
        WorkItem.objects.filter(
            workflow__slug__in=[REFUNDS, "access-requests", "crm-dedupe"],
            status=WorkItem.Status.RECEIVED,
        )
        .order_by("pk")
        .values_list("pk", flat=True)[: opts.runs]
    )
    shadow_ms: list[float] = []
    t_all = time.perf_counter()
    for pk in items:
        t0 = time.perf_counter()
        run_work_item(work_item_id=pk)
        shadow_ms.append((time.perf_counter() - t0) * 1000)
        if out_of_time():
            break
    shadow_seconds = time.perf_counter() - t_all

    # --- 2b. Shadow runs per second with the stub OpenAI server (real openai client, HTTP) ----
    from django.conf import settings

    from tests.agents.stub_openai import StubOpenAI, stub_prices_set

    stub = StubOpenAI().start()
    settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY = stub.url, "bench-key"
    stub_prices_set()  # an unpriced model's runs would stop before calling it
    stub_workflow = Workflow.objects.create(
        slug="bench-stub",
        name="Bench stub",
        model_small="stub-small",
        model_large="stub-large",
        policy={"caps": {"create_refund": {"amount": 200}}},
    )
    for tool in ("get_order", "create_refund"):
        ToolGrant.objects.create(workflow=stub_workflow, tool=tool)
    stub_items = [
        WorkItem.objects.create(
            workflow=stub_workflow,
            external_id=f"stub-{i}",
            payload={"text": f"[scenario:good] Order A-1001 arrived broken ({i})."},
            source=WorkItem.Source.COMMAND,
        ).pk
        for i in range(opts.runs)
    ]
    SandboxOrder.objects.get_or_create(  # the demo seed may have made it already
        number="A-1001",
        defaults={
            "customer_name": "Cora Diaz",
            "customer_email": "cora@example.com",
            "total": Decimal("120.00"),
            "placed_at": timezone.now(),
        },
    )
    stub_ms: list[float] = []
    t_all = time.perf_counter()
    for pk in stub_items:
        t0 = time.perf_counter()
        run_work_item(work_item_id=pk)
        stub_ms.append((time.perf_counter() - t0) * 1000)
        if out_of_time():
            break
    stub_seconds = time.perf_counter() - t_all
    stub.stop()
    stub_proposed = WorkItem.objects.filter(
        pk__in=stub_items, status=WorkItem.Status.AWAITING_REVIEW
    ).count()

    # --- 3. propose -> persist -> approve -> execute, excluding the model --------------------
    cycle_ms: list[float] = []
    cycle_cpu_ms: list[float] = []
    parts: dict[str, list[float]] = {
        "claim_propose": [],
        "persist": [],
        # The reviewer opening the card (claim_next or claim_proposal): timed on its
        # own and left out of the cycle, which is propose, persist, approve, execute.
        "review_claim": [],
        "approve": [],
        "execute": [],
    }
    # Per phase, measured on one warm cycle: queries, and commits (an outermost atomic
    # block's COMMIT, or a write outside any atomic block in autocommit mode).
    counted = min(5, opts.cycles - 1)
    phase_counts: dict[str, dict[str, int]] = {}
    counter = {"queries": 0, "commits": 0}

    def count_query(execute, sql, params, many, context):
        counter["queries"] += 1
        if opts.show_queries:
            print(f"  [{'atomic' if connection.in_atomic_block else 'auto'}] {sql[:300]}")
        head = sql.lstrip()[:6].upper()
        if not connection.in_atomic_block and head in ("INSERT", "UPDATE", "DELETE"):
            counter["commits"] += 1
        return execute(sql, params, many, context)

    real_commit = connection.commit

    def counting_commit() -> None:
        counter["commits"] += 1
        real_commit()

    profiler = None
    if opts.profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU, not waits

    from django.contrib.auth import get_user_model

    from agents import queue
    from agents.services import proposal_execute
    from reviews.claims import claim_next, claim_proposal
    from reviews.services import proposal_decide

    reviewer = get_user_model().objects.create_user(username="bench-reviewer")

    executed_inline: list[int] = []
    real_send = queue.send

    def execute_later(name: str, *args: object) -> bool:
        # Eager Celery would run it inside the approve's on-commit hook: keep the two
        # phases apart so each is timed (and counted) on its own.
        if name == queue.EXECUTE_ACTION:
            executed_inline.append(args[0])
            return True
        return real_send(name, *args)

    queue.send = execute_later
    stamps: list[float] = []
    phase_queries: list[tuple[int, int]] = []

    def mark() -> None:
        if opts.show_queries and len(stamps) < len(parts) and counter["queries"]:
            print(f"--- {list(parts)[len(stamps)]}")
        stamps.append(time.perf_counter())
        phase_queries.append((counter["queries"], counter["commits"]))

    try:
        for i in range(opts.cycles):
            item = WorkItem.objects.create(
                workflow=workflow,
                external_id=f"cycle-{i}",
                payload={"text": "Order A-9999 arrived broken, please refund."},
                source=WorkItem.Source.COMMAND,
            )
            stamps.clear()
            phase_queries.clear()
            wrapper = connection.execute_wrapper(count_query) if i == counted else None
            if wrapper is not None:
                wrapper.__enter__()
                connection.commit = counting_commit

            if profiler is not None and i > 0:
                profiler.enable()
            c0 = time.process_time()
            mark()
            run = run_claim(work_item_id=item.pk)
            runner = Runner(run)
            runner.handle_call("create_refund", refund_args(i))
            runner.state.final = {"confidence": 0.9, "rationale": "bench", "citations": []}
            mark()
            runner.finish()
            mark()
            if opts.approve != "direct":
                if opts.approve == "service":
                    claim = claim_next(reviewer=reviewer, workflow=workflow)
                else:  # decide: the card the reviewer opened from the list
                    claim = claim_proposal(
                        reviewer=reviewer, proposal=Proposal.objects.get(run=run)
                    )
                mark()
                proposal_decide(
                    proposal_id=claim.proposal_id,
                    reviewer=reviewer,
                    claim_token=claim.token,
                    verdict=Decision.Verdict.ACCEPT,
                    workflow=workflow,
                )
            else:
                mark()  # no claim: the approval below is the bench's own
                proposal = Proposal.objects.get(run=run)
                with transaction.atomic():
                    Proposal.objects.filter(pk=proposal.pk).update(
                        status=Proposal.Status.ACCEPTED, decided_at=timezone.now()
                    )
                    Decision.objects.create(
                        proposal=proposal,
                        verdict=Decision.Verdict.ACCEPT,
                        final_arguments=proposal.arguments,
                        final_arguments_hash=arguments_hash(proposal.arguments),
                        autonomy_level=AutonomyLevel.SUPERVISED,
                    )
                    plan_dispatch_ready(run_id=run.pk)  # on commit: execute_action
            mark()
            while executed_inline:
                proposal_execute(proposal_id=executed_inline.pop(0))
            mark()
            cycle_cpu_ms.append((time.process_time() - c0) * 1000)
            if profiler is not None:
                profiler.disable()
            if wrapper is not None:
                wrapper.__exit__(None, None, None)
                connection.commit = real_commit
                for name, (q0, c0_), (q1, c1_) in zip(
                    parts, phase_queries, phase_queries[1:], strict=False
                ):
                    phase_counts[name] = {"queries": q1 - q0, "commits": c1_ - c0_}
            cycle_ms.append((stamps[-1] - stamps[0] - (stamps[3] - stamps[2])) * 1000)
            for name, t_a, t_b in zip(parts, stamps, stamps[1:], strict=False):
                parts[name].append((t_b - t_a) * 1000)
            if out_of_time():
                break
    finally:
        queue.send = real_send
    if profiler is not None:
        import pstats

        profiler.dump_stats(opts.profile)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    executed = Execution.objects.filter(status=Execution.Status.SUCCEEDED).count()

    result = {
        "database": connection.settings_dict["NAME"],
        "synchronous_commit": "off" if opts.async_commit else "on",
        "pg_single_insert_commit": summary(commit_ms),
        "runner_overhead_per_tool_call": {
            "side_effecting_tool_proposed": summary(overhead),
            "read_tool_executed": summary(read_overhead),
            "trace_flush_per_5_calls": summary(flushes),
            "includes": "json parse, budget+loop check, pydantic validation, policy, trace write",
        },
        "shadow_runs_demo_model": {
            "runs": len(shadow_ms),
            "runs_per_second_one_process": round(len(shadow_ms) / shadow_seconds, 2),
            **summary(shadow_ms),
        },
        "shadow_runs_stub_openai_model": {
            "runs": len(stub_ms),
            "proposed": stub_proposed,
            "model_calls_per_run": 3,
            "runs_per_second_one_process": round(len(stub_ms) / stub_seconds, 2),
            **summary(stub_ms),
        },
        "hitl_cycle_excluding_model": {
            **summary(cycle_ms),
            "parts_p50_ms": {k: round(pct(v, 0.5), 3) for k, v in parts.items()},
            "per_phase_counts": phase_counts,
            # Every COMMIT, durable or not (the claim's, the proposals' commit without
            # waiting for the WAL flush: see agents.states).
            "commits_per_cycle": sum(
                c["commits"] for k, c in phase_counts.items() if k != "review_claim"
            ),
            "queries_per_cycle": sum(
                c["queries"] for k, c in phase_counts.items() if k != "review_claim"
            ),
            "client_cpu_ms": summary(cycle_cpu_ms),
            "executed": executed,
        },
        "elapsed_seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

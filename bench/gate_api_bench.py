"""Gate API bench: an outside agent's tool call round trip, against ingesting one work item.

What it does (the same set-up as ``bench/ingest_bench.py``, whose helpers it uses):

1. drops and recreates a private PostgreSQL database (default ``tenure_bench_gate``),
   migrates it, and starts a private ``redis-server`` on a free loopback port;
2. creates three workflows: ``bench-ingest`` (shadow, for the single work-item ingest),
   ``bench-gate-shadow`` (create_refund at shadow) and ``bench-gate-limited``
   (create_refund at limited, cap 50), one sandbox order per client thread, and an
   API token with ``work_items:write`` and ``actions:gate`` on all three;
3. starts gunicorn on 127.0.0.1 (gthread, 2 workers x 4 threads by default);
4. for each mode, for a bounded time, POSTs from a few keep-alive client threads:
   ``ingest`` (one work item), ``gate-shadow`` (a call answered ``recorded``),
   ``gate-limited`` (an in-cap refund answered ``executed`` with its result);
5. retries one call of each gate mode with its key (must answer 200, same id, and
   refund nothing more);
6. verifies: every 201 has its gate call and proposal, every ``executed`` answer its
   one refund and one execution (no key executed twice).

    .venv/bin/python bench/gate_api_bench.py --seconds 10 --threads 4

Prints JSON, with ``shadow_vs_ingest_p50`` (the target: at most 2).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdb import recreate_database  # noqa: E402 - bench/ is on sys.path
from ingest_bench import (  # noqa: E402 - bench/ is on sys.path
    NODELAY,
    PY,
    Child,
    bench_env,
    cpu_seconds,
    free_port,
    item_body,
    percentile,
    postgres_backends,
    process_tree,
    wait_ready,
)

INGEST, SHADOW, LIMITED = "bench-ingest", "bench-gate-shadow", "bench-gate-limited"


def setup_console(threads: int) -> str:
    from django.utils import timezone

    from demo.models import SandboxOrder
    from governance.api.tokens import api_token_create
    from governance.models import ApiToken, AutonomyLevel, ToolGrant, Workflow

    workflows = []
    for slug, level in (
        (INGEST, AutonomyLevel.SHADOW),
        (SHADOW, AutonomyLevel.SHADOW),
        (LIMITED, AutonomyLevel.LIMITED),
    ):
        workflow = Workflow.objects.create(
            slug=slug,
            name=slug,
            autonomy_level=level,
            policy={"caps": {"create_refund": {"amount": "50"}}},
            # An outside agent's run sends many calls; the bench's runs are per thread.
            max_tool_calls=1_000_000,
            loop_threshold=0,
        )
        ToolGrant.objects.create(workflow=workflow, tool="create_refund", autonomy_level=level)
        workflows.append(workflow)
    for t in range(threads + 1):
        SandboxOrder.objects.create(
            number=f"B-{1000 + t}",
            customer_name="Bench",
            customer_email="bench@example.com",
            total=Decimal("99999999.00"),
            items=[],
            placed_at=timezone.now(),
        )
    _, plain = api_token_create(
        name="bench-gate",
        workflows=workflows,
        verbs=[ApiToken.Verb.WORK_ITEMS_WRITE, ApiToken.Verb.ACTIONS_GATE],
        actor="bench",
        rate_limit_per_minute=100_000_000,
    )
    return plain


def gate_body(t: int, seq: int) -> dict[str, Any]:
    return {
        "tool": "create_refund",
        "arguments": {"order_number": f"B-{1000 + t}", "amount": "1.00", "reason": "bench"},
        "agent_run_id": f"run-{t}",
        "step_id": str(seq),
        "context": {"input": f"Order B-{1000 + t} arrived broken.", "trusted": False},
    }


def run_mode(
    *, base: str, token: str, mode: str, seconds: float, threads: int, tag: str = ""
) -> dict[str, Any]:
    import httpx

    latencies: list[list[float]] = [[] for _ in range(threads)]
    answers: list[Counter] = [Counter() for _ in range(threads)]
    statuses: list[Counter] = [Counter() for _ in range(threads)]
    errors: list[str] = []
    start_gate = threading.Barrier(threads + 1)
    deadline_box = [0.0]
    tag = tag or mode
    slug = {"ingest": INGEST, "gate-shadow": SHADOW, "gate-limited": LIMITED}[mode]

    def client(t: int) -> None:
        seq = 0
        transport = httpx.HTTPTransport(socket_options=NODELAY)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        with httpx.Client(headers=headers, timeout=60, transport=transport) as http:
            start_gate.wait()
            while time.monotonic() < deadline_box[0]:
                seq += 1
                if mode == "ingest":
                    url = f"{base}/api/v1/workflows/{slug}/work-items"
                    body, extra = item_body(f"{tag}-{t}-{seq}", seq), {}
                else:
                    url = f"{base}/api/v1/workflows/{slug}/actions"
                    body = gate_body(t, seq)
                    extra = {"Idempotency-Key": f"{tag}-{t}-{seq}"}
                content = json.dumps(body).encode()
                started = time.perf_counter()
                try:
                    response = http.post(url, content=content, headers=extra)
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                latencies[t].append(time.perf_counter() - started)
                statuses[t][response.status_code] += 1
                if response.status_code == 201:
                    answers[t][response.json().get("status", "item")] += 1
                elif len(errors) < 10:
                    errors.append(f"{response.status_code}: {response.text[:300]}")

    workers = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(threads)]
    for w in workers:
        w.start()
    deadline_box[0] = time.monotonic() + seconds
    began = time.perf_counter()
    start_gate.wait()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - began
    flat = [x for per in latencies for x in per]
    total_status: Counter = Counter()
    total_answers: Counter = Counter()
    for s, a in zip(statuses, answers, strict=True):
        total_status.update(s)
        total_answers.update(a)
    return {
        "mode": mode,
        "threads": threads,
        "seconds": round(elapsed, 2),
        "requests": len(flat),
        "requests_per_s": round(len(flat) / elapsed, 1),
        "latency_ms": {
            "p50": round(percentile(flat, 0.50) * 1000, 2),
            "p95": round(percentile(flat, 0.95) * 1000, 2),
            "max": round(max(flat, default=0) * 1000, 2),
        },
        "statuses": {str(k): v for k, v in sorted(total_status.items())},
        "answers": dict(total_answers),
        "errors_sample": errors[:5],
    }


def retry_check(base: str, token: str) -> dict[str, Any]:
    """A retried gate call answers 200 with the same id and acts no second time."""
    import httpx

    from demo.models import SandboxRefund

    out: dict[str, Any] = {}
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(headers=headers, timeout=30) as http:
        for mode, slug in (("gate-shadow", SHADOW), ("gate-limited", LIMITED)):
            url = f"{base}/api/v1/workflows/{slug}/actions"
            key = {"Idempotency-Key": f"retry-{mode}"}
            before = SandboxRefund.objects.count()
            first = http.post(url, json=gate_body(0, 0), headers=key)
            refunds_after_first = SandboxRefund.objects.count()
            again = http.post(url, json=gate_body(0, 0), headers=key)
            out[mode] = {
                "first": first.status_code,
                "retry": again.status_code,
                "same_id": first.json().get("id") == again.json().get("id"),
                "same_answer": first.json().get("status") == again.json().get("status"),
                "refunds_added_by_retry": SandboxRefund.objects.count() - refunds_after_first,
                "refunds_added_by_first": refunds_after_first - before,
            }
    out["ok"] = all(
        v["first"] == 201 and v["retry"] == 200 and v["same_id"] and v["same_answer"]
        and v["refunds_added_by_retry"] == 0
        for v in out.values()
    )  # fmt: skip
    return out


def verify(results: list[dict[str, Any]]) -> dict[str, Any]:
    from django.db.models import Count

    from agents.models import Execution, GateCall, Proposal
    from demo.models import SandboxRefund

    executed = sum(r["answers"].get("executed", 0) for r in results)
    created = sum(r["statuses"].get("201", 0) for r in results if r["mode"] != "ingest")
    calls = GateCall.objects.count()
    twice = Execution.objects.values("proposal_id").annotate(n=Count("pk")).filter(n__gt=1).count()
    report = {
        "gate_201_answers": created,
        "gate_calls_in_db": calls,
        "proposals_in_db": Proposal.objects.filter(gate_call__isnull=False).count(),
        "executed_answers": executed,
        "executions_succeeded": Execution.objects.filter(status="succeeded").count(),
        "refunds": SandboxRefund.objects.count(),
        "proposals_executed_twice": twice,
    }
    # The retry check adds one call per gate mode (and one refund, at limited).
    report["ok"] = (
        calls == created + 2
        and report["proposals_in_db"] == calls
        and report["refunds"] == executed + 1
        and report["executions_succeeded"] == executed + 1
        and twice == 0
    )
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default="tenure_bench_gate")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument("--keep-db", action="store_true")
    opts = parser.parse_args()

    database_url = f"{opts.pg}/{opts.db}"
    workdir = Path(tempfile.mkdtemp(prefix="gate-bench-"))
    redis_port = free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = bench_env(database_url, redis_url)
    env.update(CELERY_QUEUE="tenure-bench-gate", CACHE_KEY_PREFIX="tenure-bench-gate")
    os.environ.update(env)
    children: list[Child] = []
    report: dict[str, Any] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        children.append(
            Child(
                [
                    "redis-server",
                    "--port",
                    str(redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(workdir),
                ],
                env,
                workdir / "redis.log",
            )  # fmt: skip
        )
        recreate_database(database_url)
        subprocess.run(
            [PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        import django

        django.setup()
        import logging

        logging.getLogger("httpx").setLevel(logging.WARNING)
        token = setup_console(opts.threads)
        from django.db import connection

        connection.close()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        web = Child(
            [PY, "-m", "gunicorn", "console.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", str(opts.web_workers), "--threads", str(opts.web_threads),
             "--worker-class", "gthread", "--timeout", "60", "--no-control-socket"],
            env, workdir / "web.log",
        )  # fmt: skip
        children.append(web)
        wait_ready(base, web)
        report["setup"] = {
            "web": f"gunicorn gthread {opts.web_workers} workers x {opts.web_threads} threads",
            "cpus": os.cpu_count(),
            "loadavg_before": os.getloadavg(),
        }
        warm = [
            run_mode(
                base=base, token=token, mode=m, seconds=1.5, threads=opts.threads, tag=f"warm-{m}"
            )
            for m in ("ingest", "gate-shadow", "gate-limited")
        ]
        results = []
        for mode in ("ingest", "gate-shadow", "gate-limited"):
            web_pids = process_tree(web.proc.pid)
            pg_pids = postgres_backends(database_url)
            cpu_before = (cpu_seconds(web_pids), cpu_seconds(pg_pids))
            result = run_mode(
                base=base, token=token, mode=mode, seconds=opts.seconds, threads=opts.threads
            )
            requests = max(1, result["requests"])
            result["cpu_ms_per_request"] = {
                "gunicorn": round((cpu_seconds(web_pids) - cpu_before[0]) / requests * 1000, 2),
                "postgres": round((cpu_seconds(pg_pids) - cpu_before[1]) / requests * 1000, 2),
            }
            results.append(result)
            print(
                f"{mode}: {result['requests_per_s']} req/s, p50 {result['latency_ms']['p50']} ms",
                file=sys.stderr,
            )
        report["modes"] = results
        report["retry"] = retry_check(base, token)
        web.stop()
        report["verify"] = verify([*warm, *results])
        by_mode = {r["mode"]: r for r in results}
        ingest_p50 = by_mode["ingest"]["latency_ms"]["p50"] or 1
        report["shadow_vs_ingest_p50"] = round(
            by_mode["gate-shadow"]["latency_ms"]["p50"] / ingest_p50, 2
        )
        ingest_cpu = by_mode["ingest"]["cpu_ms_per_request"]["gunicorn"] or 1
        report["shadow_vs_ingest_gunicorn_cpu"] = round(
            by_mode["gate-shadow"]["cpu_ms_per_request"]["gunicorn"] / ingest_cpu, 2
        )
        report["ok"] = report["verify"]["ok"] and report["retry"]["ok"]
    finally:
        for child in reversed(children):
            child.stop()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if not opts.keep_db:
            recreate_database(database_url, drop_only=True)
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, indent=2))
    return 0 if report.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())

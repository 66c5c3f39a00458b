"""Runs bench with a slow model (not a timed test). Prints and writes a JSON summary.

    .venv/bin/python bench/runs_bench.py [--runs 300] [--latency 1.0] [--concurrency 300]
        [--workers 1] [--db-connections 16] [--pgbouncer] [--pool threads|prefork]
        [--max-seconds 240] [--out FILE]

An OpenAI-compatible stub on loopback (asyncio, so it holds hundreds of requests at
once) answers every request after ``--latency`` seconds; each run makes three model
calls (get_order, create_refund, the final answer: the ``good`` script of
tests/agents/stub_openai.py) and one read tool call. ``--workers`` Celery worker
processes (``--pool=threads``, ``--concurrency`` threads each, the runs queue of
``TENURE_RUNS_QUEUE``) serve the runs on the bench's own PostgreSQL database
(``tenure_bench_runs``, dropped and re-created) and Redis database 12; at most
``--db-connections`` threads of a worker hold a database connection at once
(``TENURE_RUN_DB_CONNECTIONS``). ``--pgbouncer`` puts PgBouncer (transaction mode)
between the workers and PostgreSQL.

Reports runs completed per second (first task sent -> last run finished), runs in
flight (runs in the RUNNING state, sampled every 0.25 s: peak and mean over the
steady middle of the bench) per worker host, and the workers' RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DB_NAME = os.environ.get("TENURE_BENCH_RUNS_DB", "tenure_bench_runs")
PG = os.environ.get("TENURE_BENCH_PG", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("TENURE_BENCH_REDIS", "redis://127.0.0.1:6379/12")
QUEUE = f"tenure-bench-runs-{os.getpid()}"


# --- the slow model ----------------------------------------------------------------
def _stub_answer(body: dict, served: int) -> tuple[int, dict]:
    from tests.agents.stub_openai import StubOpenAI

    class _Log:  # StubOpenAI.respond reads only ``requests`` (for the response id)
        requests = [None] * served

    return StubOpenAI.respond(_Log(), body)  # type: ignore[arg-type]


async def _serve_stub(port_out: multiprocessing.Queue, latency: float) -> None:
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        try:
            while True:  # keep-alive: the openai client reuses its connections
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = json.loads(await reader.readexactly(length)) if length else {}
                await asyncio.sleep(latency)
                served += 1
                status, payload = _stub_answer(body, served)
                data = json.dumps(payload).encode()
                writer.write(
                    f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\nConnection: keep-alive\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=2048)
    port_out.put(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


def _stub_process(port_out: multiprocessing.Queue, latency: float) -> None:
    asyncio.run(_serve_stub(port_out, latency))


# --- helpers -------------------------------------------------------------------------
def _recreate_database() -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def _rss_mb(pid: int) -> float:
    """RSS of a process and its children (a worker's pool), in MB."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_seconds(pid: int) -> float:
    """CPU time of a worker and its pool's processes (prefork)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return _cpu_seconds(pid) + sum(_cpu_seconds(int(c)) for c in children)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--latency", type=float, default=1.0, help="model latency, seconds")
    parser.add_argument("--concurrency", type=int, default=300, help="threads per worker")
    parser.add_argument("--workers", type=int, default=1, help="worker processes on this host")
    parser.add_argument("--db-connections", type=int, default=16, help="per worker process")
    parser.add_argument("--pgbouncer", action="store_true")
    parser.add_argument(
        "--pool", choices=("threads", "prefork"), default="threads",
        help="prefork: the default worker's pool, for the same-machine baseline",
    )  # fmt: skip
    parser.add_argument("--max-seconds", type=float, default=240)
    parser.add_argument("--out", default="", help="write the JSON summary here too")
    opts = parser.parse_args()

    bouncer = None
    database_url = f"{PG}/{DB_NAME}"
    _recreate_database()
    if opts.pgbouncer:
        from bench.pgbouncer import PgBouncer

        bouncer = PgBouncer(upstream=PG).start()
        database_url = bouncer.url(DB_NAME)

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "console.settings",
        "DATABASE_URL": f"{PG}/{DB_NAME}",
        "REDIS_URL": REDIS,
        "CACHE_KEY_PREFIX": f"tenure-bench-runs-{os.getpid()}",
        "SECRET_KEY": "bench-only-" + "x" * 40,
        "TENURE_HTTPS": "0",
        "DEBUG": "0",
        "CELERY_QUEUE": QUEUE,
        "TENURE_RUNS_QUEUE": QUEUE + "-runs",
        "TENURE_WORKFLOW_MAX_RUNS": str(opts.concurrency * opts.workers + 100),
        "LOG_LEVEL": "WARNING",
        "DATABASE_PREPARE_THRESHOLD": "" if opts.pgbouncer else "5",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    port_q: multiprocessing.Queue = multiprocessing.Queue()
    stub = multiprocessing.Process(target=_stub_process, args=(port_q, opts.latency), daemon=True)
    stub.start()
    stub_url = f"http://127.0.0.1:{port_q.get(timeout=30)}/v1"

    from django.db import connection
    from django.db.models import Count
    from django.utils import timezone

    from agents import queue
    from agents.models import Run, WorkItem
    from demo.models import SandboxOrder
    from governance.models import ToolGrant, Workflow
    from tests.agents.stub_openai import stub_prices_set

    stub_prices_set()
    workflow = Workflow.objects.create(
        slug="bench-slow-model",
        name="Bench slow model",
        model_small="stub-small",
        model_large="stub-large",
        max_seconds=120,
        policy={"caps": {"create_refund": {"amount": 200}}},
    )
    for tool in ("get_order", "create_refund"):
        ToolGrant.objects.create(workflow=workflow, tool=tool)
    SandboxOrder.objects.get_or_create(
        number="A-1001",
        defaults={
            "customer_name": "Cora Diaz",
            "customer_email": "cora@example.com",
            "total": Decimal("120.00"),
            "placed_at": timezone.now(),
        },
    )
    # Every item's text differs: no answer comes from the request cache.
    item_ids = [
        item.pk
        for item in WorkItem.objects.bulk_create(
            WorkItem(
                workflow=workflow,
                external_id=f"slow-{i}",
                payload={"text": f"[scenario:good] Order A-1001 arrived broken ({i})."},
                source=WorkItem.Source.COMMAND,
            )
            for i in range(opts.runs)
        )
    ]
    connection.close()

    worker_env = {
        **env,
        "DATABASE_URL": database_url,
        "OPENAI_BASE_URL": stub_url,
        "OPENAI_API_KEY": "bench-key",
        "TENURE_RUN_DB_CONNECTIONS": str(opts.db_connections if opts.pool == "threads" else 0),
    }
    logs = Path(tempfile.mkdtemp(prefix="runs-bench-"))
    logs.mkdir(parents=True, exist_ok=True)
    workers = []
    for n in range(opts.workers):
        log = open(logs / f"worker-{n}.log", "wb")  # noqa: SIM115 - closed with the process
        workers.append(
            subprocess.Popen(
                [
                    sys.executable, "-m", "celery", "-A", "console", "worker",
                    "--loglevel=INFO", f"--pool={opts.pool}", f"--concurrency={opts.concurrency}",
                    "-Q", env["TENURE_RUNS_QUEUE"], "-n", f"runs-bench-{n}-{os.getpid()}@%h",
                    "--without-gossip", "--without-mingle", "--without-heartbeat",
                ],
                cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )  # fmt: skip
    result: dict = {}
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not all(
            b"ready." in (logs / f"worker-{n}.log").read_bytes() for n in range(opts.workers)
        ):
            if any(w.poll() is not None for w in workers):
                raise SystemExit(f"a worker exited; see {logs}")
            time.sleep(0.2)
        live = (Run.Status.RUNNING, Run.Status.QUEUED)
        done_states = [s for s in Run.Status.values if s not in live]
        cpu_before = [_tree_cpu_seconds(w.pid) for w in workers]
        t0 = time.monotonic()
        for pk in item_ids:
            queue.send(queue.RUN_AGENT, pk)
        sent_s = time.monotonic() - t0
        samples: list[tuple[float, int, int]] = []  # (t, in flight, finished)
        peak_rss = [0.0] * len(workers)
        while time.monotonic() - t0 < opts.max_seconds:
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FILTER (WHERE status = %s),"
                    " count(*) FILTER (WHERE status = ANY(%s)) FROM agents_run",
                    [Run.Status.RUNNING, done_states],
                )
                running, finished = cur.fetchone()
            connection.close()
            samples.append((time.monotonic() - t0, running, finished))
            for i, w in enumerate(workers):
                peak_rss[i] = max(peak_rss[i], _rss_mb(w.pid))
            if finished >= opts.runs:
                break
            time.sleep(0.25)
        cpu_used = sum(_tree_cpu_seconds(w.pid) for w in workers) - sum(cpu_before)
        elapsed = samples[-1][0]
        finished = samples[-1][2]
        # The steady middle: between 10% and 90% of the runs finished.
        middle = [s for s in samples if opts.runs * 0.1 <= s[2] <= opts.runs * 0.9] or samples
        first_done = next((s[0] for s in samples if s[2] > 0), elapsed)
        statuses = dict(Run.objects.values_list("status").annotate(n=Count("id")))
        result = {
            "runs": opts.runs,
            "finished": finished,
            "model_latency_s": opts.latency,
            "model_calls_per_run": 3,
            "workers": opts.workers,
            "pool": opts.pool,
            "threads_per_worker": opts.concurrency,
            "db_connections_per_worker": opts.db_connections,
            "pgbouncer": opts.pgbouncer,
            "seconds": round(elapsed, 2),
            "send_seconds": round(sent_s, 2),
            "first_run_done_s": round(first_done, 2),
            "runs_per_second": round(finished / elapsed, 2) if elapsed else 0.0,
            # The finishing wave (10% to 90% of the runs done): a bounded batch that starts
            # at once finishes in a wave, so this is no sustained rate.
            "runs_per_second_10_to_90pct": _steady_rate(samples, opts.runs),
            "in_flight_peak": max(s[1] for s in samples),
            "in_flight_mean_steady": round(statistics.fmean(s[1] for s in middle), 1),
            "in_flight_per_worker_host_peak": max(s[1] for s in samples),
            "worker_rss_mb_peak": peak_rss,
            # Load-independent: the workers' own CPU per run (PostgreSQL's not included).
            "worker_cpu_ms_per_run": round(cpu_used * 1000 / finished, 1) if finished else None,
            "run_statuses": statuses,
            "target_runs_per_second": 50,
            "machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end",
            "command": "bench/runs_bench.py " + " ".join(sys.argv[1:]),
        }
    finally:
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(w.pid, signal.SIGKILL)
        stub.terminate()
        if bouncer is not None:
            bouncer.stop()
        _purge(env)
        connection.close()
    text = json.dumps(result, indent=2)
    print(text)
    if opts.out:
        Path(opts.out).write_text(text + "\n")


def _steady_rate(samples: list[tuple[float, int, int]], runs: int) -> float:
    """Runs a second between 10% and 90% of the runs finished."""
    lo = next((s for s in samples if s[2] >= runs * 0.1), None)
    hi = next((s for s in samples if s[2] >= runs * 0.9), None)
    if lo is None or hi is None or hi[0] <= lo[0]:
        return 0.0
    return round((hi[2] - lo[2]) / (hi[0] - lo[0]), 2)


def _purge(env: dict) -> None:
    import contextlib

    from console.celery import app

    with contextlib.suppress(Exception), app.connection_for_write() as conn:
        for q in (env["CELERY_QUEUE"], env["TENURE_RUNS_QUEUE"]):
            conn.default_channel.queue_purge(q)
            conn.default_channel.client.delete(q)


if __name__ == "__main__":
    main()

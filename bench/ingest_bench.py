"""Ingest bench: work items per second over HTTP, single and batched, with a run each.

What it does:

1. drops and recreates a private PostgreSQL database (default ``tenure_bench_ingest``)
   and migrates it; starts a private ``redis-server`` on a free loopback port (no
   persistence) as the Celery broker and cache, so no other Redis is touched;
2. creates a workflow at shadow (so every new item is dispatched) and an API token
   with ``work_items:write`` on it and a rate limit high enough not to interfere;
3. starts gunicorn on 127.0.0.1 with a free port (gthread, the same shape as
   ``manage.py up``: 2 workers x 4 threads by default);
4. for each mode (``single``, then ``batch-<n>`` for each batch size), for a bounded
   time, POSTs fresh items from a few client threads, each with its own keep-alive
   httpx client, and records requests, items and latency;
5. re-POSTs one single item and one batch (a retry) and checks they answer 200 and
   queue nothing new;
6. verifies: every acknowledged item is in the database, and every item in the
   database was dispatched for a run. No worker runs during the bench: the Celery
   messages left in the bench's queue are decoded (``agents.run_agent`` carries one
   work-item id, ``agents.run_agents`` a list) and their ids are compared with the
   database's, so each item has exactly one dispatch and none is missing.

Each mode also reports CPU milliseconds per request for gunicorn (master and workers),
this database's Postgres backends and the bench client: on a shared machine those are
steadier than wall-clock throughput.

    .venv/bin/python bench/ingest_bench.py --seconds 15 --threads 4 --batch-sizes 100 500

Prints JSON. The database and the Redis server are the bench's own; both are removed
at the end (``--keep-db`` keeps the database).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdb import recreate_database  # noqa: E402 - bench/ is on sys.path as the script's folder

PY = sys.executable
SLUG = "bench-ingest"
QUEUE = "tenure-bench-ingest"
RUN_TASKS = {"agents.run_agent", "agents.run_agents"}
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_env(database_url: str, redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="console.settings",
        PYTHONPATH=str(ROOT),
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        CELERY_QUEUE=QUEUE,
        CACHE_KEY_PREFIX="tenure-bench-ingest",
        SECRET_KEY="bench-only-not-a-secret-" + "b" * 40,
        TENURE_HTTPS="0",
        DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        LOG_LEVEL="WARNING",
        OPENAI_API_KEY="",
        OPENAI_BASE_URL="",
    )
    return env


class Child:
    """A subprocess in its own process group, stopped by group (only ours)."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def setup_console(rate_limit: int) -> str:
    from governance.api.tokens import api_token_create
    from governance.models import ApiToken, AutonomyLevel, Workflow

    workflow, _ = Workflow.objects.get_or_create(
        slug=SLUG, defaults={"name": "Bench ingest", "autonomy_level": AutonomyLevel.SHADOW}
    )
    _, plain = api_token_create(
        name="bench-ingest",
        workflows=[workflow],
        verbs=[ApiToken.Verb.WORK_ITEMS_WRITE],
        actor="bench",
        rate_limit_per_minute=rate_limit,
    )
    return plain


def wait_ready(base: str, web: Child, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if web.proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited; see {web.log_path}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/api/v1/openapi.json", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"gunicorn not ready in {timeout}s; see {web.log_path}")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / tick


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def postgres_backends(database_url: str) -> list[int]:
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [name])
        return [pid for (pid,) in rows.fetchall()]


def item_body(external_id: str, i: int) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "title": f"Refund for order A-{i}",
        "payload": {
            "text": f"Order A-{i} arrived broken. Please refund the 42.00.",
            "order_number": f"A-{i}",
            "amount": "42.00",
        },
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_mode(
    *, base: str, token: str, mode: str, batch: int, seconds: float, threads: int
) -> dict[str, Any]:
    """POST fresh items for ``seconds`` from ``threads`` keep-alive clients."""
    import httpx

    latencies: list[list[float]] = [[] for _ in range(threads)]
    items_ok = [0] * threads
    statuses: list[Counter] = [Counter() for _ in range(threads)]
    errors: list[str] = []
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    url_single = f"{base}/api/v1/workflows/{SLUG}/work-items"
    url_batch = f"{base}/api/v1/workflows/{SLUG}/work-items/batch"
    start_gate = threading.Barrier(threads + 1)
    deadline_box: list[float] = [0.0]

    def client(t: int) -> None:
        seq = 0
        # TCP_NODELAY: httpx writes the headers and the body separately, and without it
        # Nagle's algorithm holds the body until the server's delayed ACK (~40 ms), which
        # would be measured as server latency.
        transport = httpx.HTTPTransport(socket_options=NODELAY)
        with httpx.Client(headers=headers, timeout=60, transport=transport) as http:
            start_gate.wait()
            while time.monotonic() < deadline_box[0]:
                if batch == 0:
                    body = item_body(f"{mode}-{t}-{seq}", seq)
                    count, url = 1, url_single
                else:
                    body = {
                        "items": [item_body(f"{mode}-{t}-{seq + k}", seq + k) for k in range(batch)]
                    }
                    count, url = batch, url_batch
                seq += count
                content = json.dumps(body).encode()
                started = time.perf_counter()
                try:
                    response = http.post(url, content=content)
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                latencies[t].append(time.perf_counter() - started)
                statuses[t][response.status_code] += 1
                if response.status_code == 201:
                    items_ok[t] += count
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
    for s in statuses:
        total_status.update(s)
    return {
        "mode": mode,
        "batch_size": batch or 1,
        "threads": threads,
        "seconds": round(elapsed, 2),
        "requests": len(flat),
        "items_created": sum(items_ok),
        "items_per_s": round(sum(items_ok) / elapsed, 1),
        "requests_per_s": round(len(flat) / elapsed, 1),
        "latency_ms": {
            "p50": round(percentile(flat, 0.50) * 1000, 2),
            "p95": round(percentile(flat, 0.95) * 1000, 2),
            "max": round(max(flat, default=0) * 1000, 2),
            "mean": round(statistics.fmean(flat) * 1000, 2) if flat else 0.0,
        },
        "statuses": {str(k): v for k, v in sorted(total_status.items())},
        "errors_sample": errors[:5],
    }


def queued_item_ids(redis_url: str) -> tuple[Counter, Counter]:
    """Work-item ids carried by the run messages waiting in the bench's queue."""
    import redis

    client = redis.Redis.from_url(redis_url)
    ids: Counter = Counter()
    tasks: Counter = Counter()
    for raw in client.lrange(QUEUE, 0, -1):
        message = json.loads(raw)
        task = message["headers"]["task"]
        tasks[task] += 1
        if task not in RUN_TASKS:
            continue
        args = json.loads(base64.b64decode(message["body"]))[0]
        if task == "agents.run_agent":
            ids[int(args[0])] += 1
        else:
            ids.update(int(i) for i in args[0])
    return ids, tasks


def retry_check(base: str, token: str, redis_url: str) -> dict[str, Any]:
    """A retried single item and a retried batch answer 200 and queue nothing new."""
    import httpx
    import redis

    before = redis.Redis.from_url(redis_url).llen(QUEUE)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(headers=headers, timeout=30) as http:
        single = http.post(
            f"{base}/api/v1/workflows/{SLUG}/work-items", json=item_body("single-0-0", 0)
        )
        batch = http.post(
            f"{base}/api/v1/workflows/{SLUG}/work-items/batch",
            json={"items": [item_body(f"retry-{i}", i) for i in range(3)]},
        )
        batch_again = http.post(
            f"{base}/api/v1/workflows/{SLUG}/work-items/batch",
            json={"items": [item_body(f"retry-{i}", i) for i in range(3)]},
        )
    after = redis.Redis.from_url(redis_url).llen(QUEUE)
    return {
        "single_retry_status": single.status_code,
        "batch_first_status": batch.status_code,
        "batch_retry_status": batch_again.status_code,
        "batch_retry_created": batch_again.json().get("created"),
        "messages_added": after - before,
        # The first batch of 3 is new: one message (or three), the retries none.
        "ok": single.status_code == 200
        and batch.status_code == 201
        and batch_again.status_code == 200
        and batch_again.json().get("created") == 0,
    }


def verify(redis_url: str, acknowledged: int) -> dict[str, Any]:
    from agents.models import WorkItem

    db_ids = set(WorkItem.objects.filter(workflow__slug=SLUG).values_list("pk", flat=True))
    queued, tasks = queued_item_ids(redis_url)
    missing = db_ids - set(queued)
    unknown = set(queued) - db_ids
    twice = [i for i, n in queued.items() if n > 1]
    return {
        "method": (
            "no worker: decode the Celery messages left in the bench's own Redis queue "
            "and match their work-item ids with the database's"
        ),
        "items_in_db": len(db_ids),
        "items_acknowledged_201": acknowledged,
        "messages_by_task": dict(tasks),
        "items_dispatched": len(queued),
        "items_without_dispatch": len(missing),
        "dispatches_for_unknown_items": len(unknown),
        "items_dispatched_twice": len(twice),
        "ok": not missing and not unknown and not twice and len(db_ids) >= acknowledged,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default="tenure_bench_ingest")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    parser.add_argument("--single-threads", type=int, default=None)
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[100, 500])
    parser.add_argument("--no-single", action="store_true")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument("--keep-db", action="store_true")
    opts = parser.parse_args()

    database_url = f"{opts.pg}/{opts.db}"
    workdir = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    redis_port = free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = bench_env(database_url, redis_url)
    os.environ.update(env)
    children: list[Child] = []
    report: dict[str, Any] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        redis_server = Child(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            env, workdir / "redis.log",
        )  # fmt: skip
        children.append(redis_server)
        recreate_database(database_url)
        subprocess.run(
            [PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        import django

        django.setup()
        import logging

        logging.getLogger("httpx").setLevel(logging.WARNING)
        token = setup_console(rate_limit=100_000_000)
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
        # Warm both gunicorn workers up (imports, the broker connection, schema caches)
        # so the first mode does not pay for it.
        warm = run_mode(base=base, token=token, mode="warmup", batch=0, seconds=2, threads=4)
        warm_batch = run_mode(
            base=base, token=token, mode="warmupb", batch=50, seconds=1, threads=4
        )
        report["warmup_items"] = warm["items_created"] + warm_batch["items_created"]
        modes = []
        if not opts.no_single:
            modes.append(("single", 0, opts.single_threads or opts.threads))
        modes += [(f"batch{n}", n, opts.threads) for n in opts.batch_sizes]
        results = []
        for mode, batch, threads in modes:
            web_pids = process_tree(web.proc.pid)
            pg_pids = postgres_backends(database_url)
            cpu_before = (cpu_seconds(web_pids), cpu_seconds(pg_pids), time.process_time())
            result = run_mode(
                base=base,
                token=token,
                mode=mode,
                batch=batch,
                seconds=opts.seconds,
                threads=threads,
            )
            # CPU spent per request, which the machine's other load does not inflate much
            # (wall-clock figures on a shared machine do). Postgres: backends of this
            # database that existed when the mode started (gunicorn keeps its own open).
            web_cpu = cpu_seconds(web_pids) - cpu_before[0]
            pg_cpu = cpu_seconds(pg_pids) - cpu_before[1]
            client_cpu = time.process_time() - cpu_before[2]
            requests = max(1, result["requests"])
            result["cpu_ms_per_request"] = {
                "gunicorn": round(web_cpu / requests * 1000, 2),
                "postgres": round(pg_cpu / requests * 1000, 2),
                "bench_client": round(client_cpu / requests * 1000, 2),
            }
            result["loadavg_after"] = os.getloadavg()[0]
            results.append(result)
            print(
                f"{mode}: {result['items_per_s']} items/s, p50 {result['latency_ms']['p50']} ms",
                file=sys.stderr,
            )
        report["modes"] = results
        report["retry"] = retry_check(base, token, redis_url)
        web.stop()
        acknowledged = report["warmup_items"] + sum(r["items_created"] for r in results)
        report["verify"] = verify(redis_url, acknowledged)
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

"""Kill switch bench: time-to-stop against a live Celery worker. Prints JSON.

    .venv/bin/python bench/kill_switch_bench.py [--items 50] [--concurrency 4]

Uses its own PostgreSQL database (dropped and re-created, default
``tenure_bench_killswitch``), Redis database 12 and its own Celery queue; starts the
stub OpenAI-compatible server and one real worker, ingests ``--items`` work items on
a workflow at limited autonomy (runs, then automatic refunds; every third item
thinks slowly), pauses once refunds are executing, and reports:

- ``time_to_stop_ms``: the last model call, execution or side effect that STARTED,
  relative to the pause commit (<= 0 means nothing started after the pause);
- ``started_after_pause``: counts that must all be 0;
- ``drain_ms``: pause commit -> no run or execution still running;
- ``runs_in_flight_at_pause`` and ``escalated_paused``: in-flight runs that stopped
  at their next step and escalated with reason "paused".

Bounded: every wait has a timeout, and ``--max-seconds`` stops the whole bench.

Measured 2026-11-23 (50 items, one worker at concurrency 4, 2 shared cores,
PostgreSQL 15): time-to-stop -38.0, -16.8 and -79.9 ms over three runs (the last
start came that long BEFORE the pause commit); 0 model calls and 0 executions
started after it; 2-3 runs in flight at the pause, all escalated with reason
"paused"; drained (nothing running) 2.0-2.2 s after the pause, the length of the
slow scenario's model call that was already in flight.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DB_NAME = os.environ.get("TENURE_BENCH_DB", "tenure_bench_killswitch")
PG = os.environ.get("TENURE_BENCH_PG", "postgres://postgres@127.0.0.1:5432")
os.environ["DATABASE_URL"] = f"{PG}/{DB_NAME}"
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/12")
os.environ["CACHE_KEY_PREFIX"] = f"tenure-bench-ks-{os.getpid()}-{int(time.time())}"
os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret-" + "x" * 40)
os.environ["CELERY_QUEUE"] = f"tenure-bench-killswitch-{os.getpid()}"
os.environ["LOG_LEVEL"] = "WARNING"
os.environ["DJANGO_SETTINGS_MODULE"] = "console.settings"


def recreate_database() -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-seconds", type=int, default=300)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "kill_switch_bench.json"))
    args = parser.parse_args()
    signal.alarm(args.max_seconds)  # the bench never hangs a machine

    from tests.agents.stub_openai import StubOpenAI

    stub = StubOpenAI().start()
    os.environ["OPENAI_BASE_URL"] = stub.url
    os.environ["OPENAI_API_KEY"] = "bench-key"
    recreate_database()

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY = stub.url, "bench-key"

    from tests.agents.stub_openai import stub_prices_set

    stub_prices_set()  # an unpriced model's runs would stop before calling it

    from tests.conftest import WorkerProcess, _purge_queue
    from tests.console.test_kill_switch_live import measure_kill_switch

    log = ROOT / "bench" / "results" / "kill_switch_bench.worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    with contextlib.suppress(Exception):  # a queue that does not exist yet is fine
        _purge_queue()
    worker = WorkerProcess(log)
    worker.start(concurrency=args.concurrency)
    try:
        result = measure_kill_switch(stub, items=args.items)
    finally:
        worker.stop()
        stub.stop()
    result.pop("workflow")
    result["paused_at"] = result["paused_at"].isoformat()
    result.update(items=args.items, concurrency=args.concurrency, worker_log=str(log))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

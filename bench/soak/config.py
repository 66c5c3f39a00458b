"""Where the soak's things live, and the copy of the source every process runs from."""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
RESULTS = ROOT / "bench" / "results"
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
# The database the run drops and recreates, and the port of its own Redis. Two soaks
# on one machine (test suites of two checkouts) name their own: tests/soak does.
DB_NAME = os.environ.get("TENURE_SOAK_DB", "tenure_soak")
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
REDIS_PORT = int(os.environ.get("TENURE_SOAK_REDIS_PORT", "6390"))
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"
QUEUE = "tenure-soak"
PASSWORD = "tenure-demo"
SLUG = "refunds"
INGEST_OFF_SLUG = "soak-ingest"  # level off: ingest throughput without agent runs
CLAIM_LEASE_SECONDS = 20
# The sweeper re-sends work stranded this long (production: 120 s) ...
STRANDED_AFTER_SECONDS = 20
# ... when the beat's redispatch job next runs (console/ops/beat.py: every minute). An
# item with no broker message is lost only once this window has passed without it
# coming back: before that it is late.
SWEEP_WINDOW_SECONDS = STRANDED_AFTER_SECONDS + 60 + 15
VISIBILITY_TIMEOUT = 30
TEST_CARDS = ("4111 1111 1111 1111", "5500-0000-0000-0004")

_source = ROOT


def source() -> Path:
    """The tree every process of this run starts from (the snapshot, once taken)."""
    return _source


def source_use(path: Path) -> None:
    """Run everything from ``path`` from now on: the children, and the harness's own
    imports of the product (others may be editing the working tree meanwhile)."""
    global _source  # one run, one source
    _source = path
    sys.path.insert(0, str(path))


def now_utc() -> datetime:
    return datetime.now(UTC)


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

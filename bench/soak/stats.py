"""Percentiles and latency: as the load generator saw it (client side) and as the web
logged it (server side), and errors counted over a time window."""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from .load import Sample


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency_summary(samples: list[Sample], seconds: float) -> dict[str, Any]:
    by_kind: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_kind[s.kind].append(s)
    out = {}
    for kind, rows in sorted(by_kind.items()):
        ok = [s.ms for s in rows if 200 <= s.status < 400]
        out[kind] = {
            "n": len(rows),
            "ok": len(ok),
            "status": dict(sorted(count_by(str(s.status) for s in rows).items())),
            "per_s": round(len(rows) / seconds, 1),
            **(
                {
                    "p50_ms": round(pct(ok, 0.50), 1),
                    "p95_ms": round(pct(ok, 0.95), 1),
                    "p99_ms": round(pct(ok, 0.99), 1),
                    "mean_ms": round(statistics.fmean(ok), 1),
                }
                if ok
                else {}
            ),
        }
    return out


def count_by(values: Any) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for v in values:
        out[v] += 1
    return out


def first_ok_after(samples: list[Sample], t: float, kinds: set[str] | None = None) -> float | None:
    ok = [
        s.at + s.ms / 1000
        for s in samples
        if s.at >= t and 200 <= s.status < 400 and (kinds is None or s.kind in kinds)
    ]
    return round(min(ok) - t, 2) if ok else None


def errors_between(samples: list[Sample], start: float, end: float) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for s in samples:
        if start <= s.at < end and (s.status >= 500 or s.status == 0):
            out[f"{s.kind}:{s.status}"] += 1
    return dict(out)


# --- Server-side latency, from the web's request log ---------------------------------------

SERVER_KINDS = (
    (re.compile(r"^POST /w/[\w-]+/queue/\d+/decide/$"), "decide_next"),
    (re.compile(r"^GET /w/[\w-]+/queue/counts/$"), "queue_counts"),
    (re.compile(r"^GET /w/[\w-]+/queue/$"), "queue_page"),
    (re.compile(r"^GET /w/[\w-]+/dashboard/$"), "dashboard"),
    (re.compile(r"^GET /ops/$"), "ops"),
    (re.compile(r"^GET /bench/floor/\d+/$"), "floor"),
    (re.compile(r"^POST /api/v1/workflows/[\w-]+/work-items/batch$"), "ingest_batch"),
    (re.compile(r"^POST /api/v1/workflows/[\w-]+/work-items$"), "ingest_single"),
)


def server_latency(web_log: Path, start: float, end: float) -> dict[str, Any]:
    """p50/p95/p99 of ``duration_ms`` as the web logged it (tenure.request), in the load
    window: the server's time without the load generator's own queueing."""
    by_kind: dict[str, list[float]] = defaultdict(list)
    with open(web_log, errors="replace") as fh:
        for line in fh:
            if '"tenure.request"' not in line:
                continue
            try:
                record = json.loads(line)
                at = datetime.fromisoformat(record["timestamp"]).timestamp()
            except (ValueError, KeyError):
                continue
            if not start <= at <= end or record.get("status", 500) >= 400:
                continue
            key = f"{record.get('method')} {record.get('path')}"
            for pattern, kind in SERVER_KINDS:
                if pattern.match(key):
                    by_kind[kind].append(float(record.get("duration_ms", 0)))
                    break
    return {
        kind: {
            "n": len(v),
            "p50_ms": round(pct(v, 0.5), 1),
            "p95_ms": round(pct(v, 0.95), 1),
            "p99_ms": round(pct(v, 0.99), 1),
        }
        for kind, v in sorted(by_kind.items())
    }

"""Precision and recall of the injection detector on a labelled dataset. Prints JSON.

    .venv/bin/python bench/injection_bench.py DATASET [--text-column text]
        [--label-column label] [--positive injection,1,true] [--format csv|jsonl]
        [--show-misses N]

DATASET is a CSV file with a header row, or JSON Lines (one object a line), holding
a text column and a label column. A row is positive (an injection) when its label,
lower-cased, is one of ``--positive``; every other label is negative. The detector
is ``agents.injection.injection_detect`` on the text, as the runner calls it on one
untrusted string: a row is predicted positive when it raises any flag.

Prints: rows, positives, negatives, tp, fp, tn, fn, precision, recall, f1,
accuracy, flags by code, and microseconds per text. ``--show-misses N`` adds the
first N false positives and false negatives (their texts cut to 160 characters).
Keep third-party datasets out of the repository: point this at a copy in /tmp.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.injection import injection_detect  # noqa: E402 - after the path above

DEFAULT_POSITIVE = "injection,1,true,yes,malicious,jailbreak,attack,unsafe"


def rows_read(path: Path, fmt: str) -> list[dict[str, Any]]:
    if fmt == "jsonl" or (fmt == "auto" and path.suffix in (".jsonl", ".ndjson")):
        with path.open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def bench(
    rows: list[dict[str, Any]],
    *,
    text_column: str,
    label_column: str,
    positive: set[str],
    show_misses: int = 0,
) -> dict[str, Any]:
    counts = Counter()
    codes: Counter = Counter()
    misses: dict[str, list[str]] = {"false_positives": [], "false_negatives": []}
    started = time.perf_counter()
    for row in rows:
        text = str(row.get(text_column) or "")
        actual = str(row.get(label_column, "")).strip().lower() in positive
        flags = injection_detect(text)
        predicted = bool(flags)
        codes.update(flag["code"] for flag in flags)
        kind = {(True, True): "tp", (False, True): "fp", (False, False): "tn", (True, False): "fn"}[
            (actual, predicted)
        ]
        counts[kind] += 1
        if show_misses and kind in ("fp", "fn"):
            bucket = misses["false_positives" if kind == "fp" else "false_negatives"]
            if len(bucket) < show_misses:
                bucket.append(text[:160])
    seconds = time.perf_counter() - started
    tp, fp, tn, fn = (counts[k] for k in ("tp", "fp", "tn", "fn"))
    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    f1 = ratio(2 * tp, 2 * tp + fp + fn)
    report: dict[str, Any] = {
        "rows": len(rows),
        "positives": tp + fn,
        "negatives": tn + fp,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": ratio(tp + tn, len(rows)),
        "flags_by_code": dict(codes.most_common()),
        "microseconds_per_text": round(seconds * 1e6 / max(1, len(rows)), 1),
    }
    if show_misses:
        report.update(misses)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    parser.add_argument(
        "--positive", default=DEFAULT_POSITIVE, help="Comma-separated labels that mean injection."
    )
    parser.add_argument("--format", choices=("auto", "csv", "jsonl"), default="auto")
    parser.add_argument("--show-misses", type=int, default=0)
    args = parser.parse_args(argv)
    rows = rows_read(args.dataset, args.format)
    if rows and args.text_column not in rows[0]:
        parser.error(f"no column {args.text_column!r}; the columns are {sorted(rows[0])}")
    positive = {label.strip().lower() for label in args.positive.split(",") if label.strip()}
    report = bench(
        rows,
        text_column=args.text_column,
        label_column=args.label_column,
        positive=positive,
        show_misses=args.show_misses,
    )
    print(json.dumps({"dataset": str(args.dataset), **report}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

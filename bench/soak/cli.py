"""The command line: ``.venv/bin/python bench/soak.py [options]``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from .report import performance_doc_write, summary
from .run import run


def parser() -> argparse.ArgumentParser:
    overview = sys.modules[__package__].__doc__ or ""
    parser = argparse.ArgumentParser(prog="bench/soak.py", description=overview.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50,000 proposals, 60 s of load")
    parser.add_argument("--proposals", type=int, default=None)
    parser.add_argument("--pending-share", type=float, default=0.2)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--reviewers", type=int, default=20)
    parser.add_argument(
        "--think", type=float, default=2.0, help="reviewer think time per card (s, ±50%%)"
    )
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument("--burst-seconds", type=float, default=10)
    parser.add_argument("--burst-threads", type=int, default=2)
    parser.add_argument("--burst-batch", type=int, default=500)
    parser.add_argument("--settle", type=float, default=150)
    parser.add_argument("--max-wall", type=float, default=None, help="hard wall-clock cap (s)")
    parser.add_argument("--no-faults", action="store_true", help="inject no fault")
    parser.add_argument("--no-docs", action="store_true", help="do not write PERFORMANCE.md")
    return parser


def options(argv: list[str] | None = None) -> argparse.Namespace:
    opts = parser().parse_args(argv)
    opts.proposals = opts.proposals or (50_000 if opts.quick else 1_000_000)
    opts.seconds = opts.seconds or (60 if opts.quick else 120)
    opts.max_wall = opts.max_wall or (600 if opts.quick else 2400)
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = options(argv)

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    report = run(opts)
    command = f".venv/bin/python bench/soak.py{' --quick' if opts.quick else ''}"
    if opts.proposals not in (50_000, 1_000_000):
        command += f" --proposals {opts.proposals}"
    if opts.no_faults:
        command += " --no-faults"
    if not opts.no_docs:
        performance_doc_write(report, command)
    print(json.dumps(summary(report), indent=2, default=str))
    return 1 if report["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""Soak test of the whole system: load, faults, invariants and a performance report.

    .venv/bin/python bench/soak.py            # 1,000,000 proposals, 120 s of load
    .venv/bin/python bench/soak.py --quick    # 50,000 proposals, 60 s of load
    .venv/bin/python bench/soak.py --help     # every option

The harness itself is the package next to this script, ``bench/soak/`` (its
``__init__`` says what a run does and which module does what). Running this file puts
``bench/`` first on ``sys.path``, where the package ``soak`` wins over this module of
the same name.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The project root, for the product's packages and bench.* (settings, floor view);
# every process of a run then switches to a snapshot of it (soak.config.source_use).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from soak.cli import main  # noqa: E402 - after the path above

if __name__ == "__main__":
    sys.exit(main())

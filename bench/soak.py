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

import os
import sys
from pathlib import Path


def _virtualenv_by_its_real_path() -> None:
    """Run from the virtualenv's real path. A checkout's .venv may be a symlink to a
    shared one; if that link is replaced while a run goes on (a full run lasts most of
    an hour), every module not imported yet disappears from this interpreter's view:
    the first import of the auth backends, at the report, failed with "cannot import
    name 'backends' from 'django.contrib.auth'"."""
    prefix = Path(sys.prefix)
    python = prefix.resolve() / "bin" / Path(sys.executable).name
    if sys.prefix != sys.base_prefix and prefix.resolve() != prefix and python.exists():
        os.execv(python, [str(python), *sys.argv])  # noqa: S606 - this same command, re-run


_virtualenv_by_its_real_path()
# The project root, for the product's packages and bench.* (settings, floor view);
# every process of a run then switches to a snapshot of it (soak.config.source_use).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from soak.cli import main  # noqa: E402 - after the path above

if __name__ == "__main__":
    sys.exit(main())

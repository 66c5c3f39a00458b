"""On-commit callbacks as tests see them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def task_callbacks(callbacks: list[Callable[[], Any]]) -> list[Callable[[], Any]]:
    """The callbacks that send work somewhere, without the audit chain's seals
    (every auditing transaction seals its chain on commit)."""
    return [c for c in callbacks if not hasattr(c, "audit_chain")]

"""What governance asks of the layers above it, registered by them at start-up.

Governance is the bottom layer: it holds the rules (the ladder, the gate's
thresholds, four eyes, the breaker's floors, change control) but not the
evidence, which the layers above own: the metrics (evidence), the regression
suites and the tool registry (agents). It never imports them. Each app registers
its answers in its ``AppConfig.ready``; a question nobody registered an answer to
fails closed (no evidence: no promotion).

| hook | registered by | answers |
|---|---|---|
| ``gate_evidence`` | evidence | the promotion gate's criteria with their numbers |
| ``breaker_reasons`` | evidence | why a tool's evidence has turned (sampled agreement, errors) |
| ``suite_check`` | agents | the regression suites replayed against a new configuration |
| ``tool_known`` | agents | whether a tool exists for a workflow (built-in or declared) |
| ``on_resume`` | agents | what a resume restarts (held plans, waiting items), after commit |
| ``approval_always`` | agents | why a tool waits for a human (or runs) whatever its level, or "" |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ERR_NOT_REGISTERED = "No app registered the “{name}” hook; governance refuses rather than guess."

SINGLE = ("gate_evidence", "breaker_reasons", "suite_check", "tool_known", "approval_always")
MANY = ("on_resume",)

_single: dict[str, Callable[..., Any]] = {}
_many: dict[str, list[Callable[..., Any]]] = {name: [] for name in MANY}


class HookMissing(RuntimeError):
    """A hook nobody registered: governance cannot decide, so it refuses."""


def register(name: str, fn: Callable[..., Any]) -> None:
    """Register ``fn`` as the answer to ``name`` (idempotent for the same function)."""
    if name in SINGLE:
        _single[name] = fn
    elif name in MANY:
        if fn not in _many[name]:
            _many[name].append(fn)
    else:
        raise ValueError(f"Unknown governance hook: {name}")


def get(name: str) -> Callable[..., Any]:
    try:
        return _single[name]
    except KeyError:
        raise HookMissing(ERR_NOT_REGISTERED.format(name=name)) from None


def registered(name: str) -> bool:
    return name in _single or bool(_many.get(name))


def all_of(name: str) -> list[Callable[..., Any]]:
    return list(_many[name])

"""Registers the gate's evidence and the breaker's numbers with governance at start-up."""

from __future__ import annotations

from django.apps import AppConfig


class EvidenceConfig(AppConfig):
    """The top layer: metrics, dashboards, explain, the evidence pack, exports and the
    read API. At start-up it gives governance the evidence its rules need: the
    promotion gate's numbers and the circuit breaker's (``governance.hooks``)."""

    name = "evidence"
    verbose_name = "Evidence"

    def ready(self) -> None:
        from evidence import breaker, gate
        from governance import hooks

        hooks.register("gate_evidence", gate.gate_evaluate)
        hooks.register("breaker_reasons", breaker.breaker_reasons)

"""Periodic upkeep of the agent's records (retention)."""

from __future__ import annotations

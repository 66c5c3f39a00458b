"""Connectors: how tools reach systems outside Tenure.

- ``http``: a signed, idempotent HTTP POST of a validated action.
- ``sql_template``: named, parameterised, read-only SQL query templates.
"""

from __future__ import annotations

from agents.connectors.http import (
    ConnectorConfigError,
    ConnectorError,
    HttpConnector,
    verify_signature,
)

__all__ = ["ConnectorConfigError", "ConnectorError", "HttpConnector", "verify_signature"]

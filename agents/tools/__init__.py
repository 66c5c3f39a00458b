"""The typed tools registry.

Built-in tools live here by sub-domain; a workflow may only call tools it has an
enabled ``ToolGrant`` for. Tools registered from JSON schemas (``ToolDefinition``
rows, built by ``agents.schema_tools``) join the same registry, under the same rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agents.tools import knowledge
from agents.tools.base import (
    Tool,
    ToolContext,
    ToolError,
    TransientToolError,
    arguments_hash,
    canonical_json,
)
from demo.tools import access, crm, refunds

if TYPE_CHECKING:
    from governance.models import Workflow

__all__ = [
    "BUILTIN_TOOLS",
    "Tool",
    "ToolContext",
    "ToolError",
    "TransientToolError",
    "arguments_hash",
    "builtin_tool",
    "canonical_json",
    "registry_for",
]

ERR_SCHEMA_TOOLS_MISSING = (
    "agents.schema_tools is not installed; tools registered from JSON schemas are unavailable."
)

BUILTIN_TOOLS: dict[str, Tool] = {
    tool.name: tool for module in (refunds, access, crm, knowledge) for tool in module.TOOLS
}


def builtin_tool(name: str) -> Tool | None:
    return BUILTIN_TOOLS.get(name)


def _definition_tools(workflow: Workflow, names: set[str]) -> list[Tool]:
    if not names:
        return []
    try:
        from agents.schema_tools import tools_from_definitions
    except ImportError as exc:  # pragma: no cover - only while A2's module is absent
        raise ImportError(ERR_SCHEMA_TOOLS_MISSING) from exc
    return [tool for tool in tools_from_definitions(workflow) if tool.name in names]


def registry_for(workflow: Workflow, *, granted: set[str] | None = None) -> dict[str, Tool]:
    """The tools this workflow's agent may call: enabled grants only.

    A built-in name wins over a schema-registered tool of the same name, so a JSON
    definition can never swap the handler of a built-in tool. ``granted`` (the
    enabled grant names) may be passed by a caller that already loaded the grants.
    """
    if granted is None:
        granted = set(workflow.grants.filter(enabled=True).values_list("tool", flat=True))
    tools = {tool.name: tool for tool in _definition_tools(workflow, granted - set(BUILTIN_TOOLS))}
    for name in granted & set(BUILTIN_TOOLS):
        tools[name] = BUILTIN_TOOLS[name]
    return tools

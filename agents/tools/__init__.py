"""The typed tools registry.

Built-in tools are Python tools registered at start-up (``tools_register``): the
knowledge search here, and whatever an installed app ships (the demo registers its
sandbox tools from ``demo.apps``). A workflow may only call tools it has an enabled
``ToolGrant`` for. Tools registered from JSON schemas (``ToolDefinition`` rows,
built by ``agents.schema_tools``) and the workflow's read-only query templates
(``agents.tools.query_templates``) join the same registry, under the same rule.
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

if TYPE_CHECKING:
    from agents.schema_tools import RefusedTool
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
    "tool_known",
    "tools_refused",
    "tools_register",
]

ERR_SCHEMA_TOOLS_MISSING = (
    "agents.schema_tools is not installed; tools registered from JSON schemas are unavailable."
)

ERR_TOOL_TAKEN = "A built-in tool called {name} is already registered."

BUILTIN_TOOLS: dict[str, Tool] = {tool.name: tool for tool in knowledge.TOOLS}


def tools_register(tools: list[Tool]) -> None:
    """Add Python tools to the built-in set (an app's ``ready``). A name is taken once:
    a second tool of the same name is a configuration error, not a silent swap."""
    for tool in tools:
        existing = BUILTIN_TOOLS.get(tool.name)
        if existing is not None and existing is not tool:
            raise ValueError(ERR_TOOL_TAKEN.format(name=tool.name))
        BUILTIN_TOOLS[tool.name] = tool


def builtin_tool(name: str) -> Tool | None:
    return BUILTIN_TOOLS.get(name)


def _definition_tools(workflow: Workflow, names: set[str]) -> list[Tool]:
    if not names:
        return []
    try:
        from agents.schema_tools import tools_from_definitions
    except ImportError as exc:  # pragma: no cover - only while A2's module is absent
        raise ImportError(ERR_SCHEMA_TOOLS_MISSING) from exc
    return tools_from_definitions(workflow, names=names)


def registry_for(workflow: Workflow, *, granted: set[str] | None = None) -> dict[str, Tool]:
    """The tools this workflow's agent may call: enabled grants only.

    A JSON-schema definition that cannot be enforced is left out on its own (logged;
    ``tools_refused`` says why); the workflow's other tools keep working.

    A built-in name wins over a schema-registered tool of the same name, so a JSON
    definition can never swap the handler of a built-in tool. ``granted`` (the
    enabled grant names) may be passed by a caller that already loaded the grants.
    """
    if granted is None:
        granted = set(workflow.grants.filter(enabled=True).values_list("tool", flat=True))
    from agents.tools.query_templates import template_tools

    others = granted - set(BUILTIN_TOOLS)
    # A query template never replaces a schema tool or a built-in of the same name.
    tools = {tool.name: tool for tool in template_tools(workflow, others)}
    tools.update({tool.name: tool for tool in _definition_tools(workflow, others)})
    for name in granted & set(BUILTIN_TOOLS):
        tools[name] = BUILTIN_TOOLS[name]
    return tools


def tools_refused(workflow: Workflow) -> list[RefusedTool]:
    """The workflow's tool definitions that could not be loaded, with their reasons."""
    from agents.schema_tools import tool_definitions_refused

    return tool_definitions_refused(workflow)


def tool_known(*, workflow: Workflow, tool: str) -> bool:
    """Whether ``tool`` exists for the workflow: built in, or declared for it."""
    return tool in registry_for(workflow, granted={tool})

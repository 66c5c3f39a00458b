"""Query templates as tools: the read-only SQL connector an agent may call.

A workflow declares its templates in ``Workflow.policy["query_templates"]`` (see
``agents.connectors.sql_template``); a workflow spec declares them as tools of kind
``query_template``, and an admin writes them. A granted template is a tool of risk
class ``read``: the model supplies only its arguments, which are validated against
the template's ``parameters`` schema (or, without one, each named parameter of the
SQL as a required string) and bound by the driver, never formatted into the SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from agents.connectors.sql_template import (
    POLICY_KEY,
    QueryTemplate,
    SqlTemplateError,
    query_template_run,
)
from agents.models import RiskClass
from agents.tools.base import Tool, ToolContext, ToolError

if TYPE_CHECKING:
    from governance.models import Workflow

ERR_PARAMETERS = "Query template {name!r}: its parameters {declared} are not the SQL's {found}."


def parameters_schema(template: QueryTemplate, declared: dict[str, Any] | None) -> dict[str, Any]:
    """The template's arguments as a JSON schema: the declared one (checked against the
    SQL's parameters), or each parameter a required string."""
    if declared:
        names = sorted((declared.get("properties") or {}).keys())
        if names != sorted(template.params):
            raise SqlTemplateError(
                ERR_PARAMETERS.format(
                    name=template.name, declared=names, found=list(template.params)
                )
            )
        return declared
    return {
        "type": "object",
        "properties": {name: {"type": "string"} for name in template.params},
        "required": list(template.params),
        "additionalProperties": False,
    }


def _handler(name: str) -> Any:
    def handle(ctx: ToolContext, args: BaseModel) -> dict[str, Any]:
        params = args.model_dump(mode="json", by_alias=True)
        try:
            return query_template_run(workflow=ctx.workflow, name=name, params=params)
        except SqlTemplateError as error:
            raise ToolError(str(error)) from error

    return handle


def template_tool(name: str, config: dict[str, Any]) -> Tool:
    """One template as a tool; raises ``SqlTemplateError`` (or ``SchemaToolError``)
    when it cannot be enforced."""
    from agents.schema_tools import model_from_schema

    template = QueryTemplate.from_config(name, config)
    schema = parameters_schema(template, config.get("parameters"))
    return Tool(
        name=name,
        description=template.description or f"Read-only query {name}.",
        args_model=model_from_schema(name, schema),
        risk_class=RiskClass.READ,
        handler=_handler(name),
        # A read of live data: the system of record may change between two calls.
        cacheable=False,
        tags=("query_template",),
    )


def template_tools(workflow: Workflow, names: Iterable[str]) -> list[Tool]:
    """The workflow's query templates among ``names``, as tools. One that cannot be
    enforced is left out on its own (fail closed), like a schema tool."""
    from agents.schema_tools import SchemaToolError

    policy = workflow.policy if isinstance(workflow.policy, dict) else {}
    configured = policy.get(POLICY_KEY) or {}
    tools = []
    for name in sorted(set(names) & set(configured)):
        try:
            tools.append(template_tool(name, configured[name]))
        except (SqlTemplateError, SchemaToolError):
            continue
    return tools

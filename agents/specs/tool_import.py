"""Import tools from OpenAI function schemas (pasted or uploaded JSON) into a workflow.

Each function is taken on its own: one whose contract cannot be enforced
(``agents.schema_tools``) is refused with the reason, and the others go on. An
accepted function becomes the workflow's ``ToolDefinition`` and a request to grant
it (``config_change_request``): adding a tool is a widening, so it waits for green
regression suites and a second manager, and starts in shadow mode. When the request
is refused, its definition is not kept either: nothing is half-written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from agents.models import RiskClass, ToolDefinition
from agents.schema_tools import SchemaToolError, definition_from_openai, model_from_schema
from agents.tools import BUILTIN_TOOLS
from governance.audit import audit_append
from governance.change_control import config_change_request
from governance.models import ConfigChange, ToolGrant, Workflow

MAX_TOOLS = 200
ERR_NOT_JSON = "The schemas are not JSON: {error}"
ERR_SHAPE = (
    'Give a JSON list of OpenAI function definitions ({"type": "function", "function": '
    '{...}}), one definition, or an object with a "tools" list.'
)
ERR_TOO_MANY = f"At most {MAX_TOOLS} functions at once."
ERR_BUILTIN = "A built-in tool is called {name}; a schema cannot replace it."
ERR_GRANTED = (
    "{name} is already granted to this workflow; to change its contract, remove it, then "
    "import it again."
)
ERR_DUPLICATE = "{name} appears more than once in what you imported."
ERR_RISK = "Choose the risk class of the imported tools."


@dataclass(frozen=True)
class Imported:
    name: str
    change_id: int
    applied: bool


@dataclass(frozen=True)
class Refused:
    name: str
    reason: str


@dataclass
class ImportResult:
    imported: list[Imported] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)


def schemas_parse(text: str) -> list[Any]:
    """The function definitions in ``text``; ``ValidationError`` for anything else."""
    try:
        loaded = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise ValidationError(ERR_NOT_JSON.format(error=error), code="not_json") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("tools"), list):
        loaded = loaded["tools"]
    if isinstance(loaded, dict):
        loaded = [loaded]
    if not isinstance(loaded, list) or not loaded:
        raise ValidationError(ERR_SHAPE, code="shape")
    if len(loaded) > MAX_TOOLS:
        raise ValidationError(ERR_TOO_MANY, code="too_many")
    return loaded


def tool_schemas_import(
    *,
    workflow: Workflow,
    actor: AbstractBaseUser,
    functions: list[Any],
    risk_class: str,
    endpoint_url: str,
    credential_name: str = "",
    untrusted_output: bool = False,
    reason: str = "",
) -> ImportResult:
    if risk_class not in RiskClass.values:
        raise ValidationError(ERR_RISK, code="risk")
    result = ImportResult()
    granted = set(
        ToolGrant.objects.filter(workflow=workflow, enabled=True).values_list("tool", flat=True)
    )
    seen: set[str] = set()
    for index, function in enumerate(functions):
        label = f"#{index + 1}"
        try:
            name, description, parameters = definition_from_openai(function)
            label = name
            model_from_schema(name, parameters)
        except SchemaToolError as error:
            result.refused.append(Refused(name=label, reason=str(error)))
            continue
        except Exception as error:  # noqa: BLE001 - a schema is data: whatever fails, refuse it
            result.refused.append(
                Refused(name=label, reason=f"The schema cannot be built: {error}")
            )
            continue
        problem = None
        if name in seen:
            problem = ERR_DUPLICATE.format(name=name)
        elif name in BUILTIN_TOOLS:
            problem = ERR_BUILTIN.format(name=name)
        elif name in granted:
            problem = ERR_GRANTED.format(name=name)
        seen.add(name)
        if problem:
            result.refused.append(Refused(name=name, reason=problem))
            continue
        try:
            with transaction.atomic():
                ToolDefinition.objects.update_or_create(
                    workflow=workflow,
                    name=name,
                    defaults={
                        "description": description,
                        "parameters": parameters,
                        "risk_class": risk_class,
                        "endpoint_url": endpoint_url,
                        "credential_name": credential_name,
                        "untrusted_output": untrusted_output,
                    },
                )
                audit_append(
                    action="tool_definition.saved",
                    actor=actor,
                    workflow=workflow,
                    data={"name": name, "risk_class": risk_class, "endpoint": endpoint_url,
                          "source": "import"},
                )  # fmt: skip
                change = config_change_request(
                    workflow=workflow, actor=actor, tool=name, caps={}, reason=reason
                )
        except ValidationError as error:
            result.refused.append(Refused(name=name, reason=" ".join(error.messages)))
            continue
        result.imported.append(
            Imported(
                name=name,
                change_id=change.pk,
                applied=change.status == ConfigChange.Status.APPLIED,
            )
        )
    return result

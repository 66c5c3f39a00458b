"""Tools from OpenAI function definitions: an existing agent's tool set, typed.

``model_from_schema`` turns a function's JSON-schema ``parameters`` into a
pydantic model when the tools are loaded, so the model's arguments are
validated exactly like a hand-written tool's. Supported: ``string``,
``integer``, ``number``, ``boolean``, ``array``, ``object`` (nested), ``null``
in a type list, ``enum``, ``const``, ``required``, ``default``,
``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum``/``multipleOf``,
``minLength``/``maxLength``/``pattern``, ``minItems``/``maxItems``, and the
formats ``date``, ``date-time``, ``time``, ``uuid``, ``email``, ``uri``.
Anything else (``anyOf``, ``$ref``, ``additionalProperties`` as a schema...)
raises ``SchemaToolError`` naming the keyword and where it is: a tool whose
contract we cannot enforce is not loaded (fail closed).

Objects refuse unknown properties unless the schema says
``"additionalProperties": true``. Integers, numbers and booleans are strict:
``"5"`` is not 5 and ``"yes"`` is not true.

``tools_from_definitions(workflow)`` builds ``agents.tools.base.Tool`` objects
from the workflow's ``ToolDefinition`` rows; each one's handler POSTs
``{"tool", "workflow", "arguments"}`` through the signed HTTP connector with
the workflow's credential and the execution's idempotency key.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import keyword
import re
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    create_model,
)

from agents.connectors.http import ConnectorConfigError, ConnectorError, HttpConnector
from agents.credentials import CredentialError, credential_get
from agents.models import RiskClass, ToolDefinition
from agents.tools.base import (
    Tool,
    ToolContext,
    ToolError,
    TransientToolError,
    arguments_hash,
    canonical_json,
)

MAX_DEPTH = 6
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
URI_PATTERN = r"^[A-Za-z][A-Za-z0-9+.\-]*://\S+$"
ANNOTATION_KEYWORDS = frozenset({"description", "title", "examples", "$comment", "default"})
KNOWN_KEYWORDS = ANNOTATION_KEYWORDS | {
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minItems",
    "maxItems",
    "strict",
}
FORMATS: dict[str, Any] = {
    "date": dt.date,
    "date-time": dt.datetime,
    "time": dt.time,
    "uuid": uuid.UUID,
}

ERR_UNSUPPORTED_KEYWORD = "Unsupported schema keyword {keyword!r} at {path}."
ERR_UNSUPPORTED_TYPE = "Unsupported type {type!r} at {path}."
ERR_UNSUPPORTED_FORMAT = "Unsupported format {format!r} at {path}."
ERR_NO_TYPE = "No 'type' (or 'enum'/'const') at {path}."
ERR_NOT_OBJECT = "A tool's parameters must be an object schema, at {path}."
ERR_BAD_VALUE = "Invalid value for {keyword!r} at {path}."
ERR_REQUIRED_UNKNOWN = "Required property {name!r} is not defined at {path}."
ERR_TOO_DEEP = f"The schema nests deeper than {MAX_DEPTH} levels at {{path}}."
ERR_BAD_PATTERN = "Invalid regular expression at {path}: {error}"
ERR_TOOL_NAME = "Tool name {name!r} must match ^[a-zA-Z0-9_-]{{1,64}}$ (OpenAI's rule)."
ERR_RISK_CLASS = "Tool {name!r} has an unknown risk class {risk!r}."
ERR_DEFINITION = "Tool definition {name!r}: {error}"
ERR_NO_CREDENTIAL = "Tool {name!r} has no credential configured to sign its requests."

_TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_RESERVED_FIELD_NAMES = frozenset(dir(BaseModel))


class SchemaToolError(ValueError):
    """A function definition that cannot be turned into a safe typed tool."""


# --- JSON schema -> pydantic ------------------------------------------------------


def _check_keywords(schema: dict[str, Any], path: str) -> None:
    for key in schema:
        if key not in KNOWN_KEYWORDS:
            raise SchemaToolError(ERR_UNSUPPORTED_KEYWORD.format(keyword=key, path=path))


def _number(schema: dict[str, Any], key: str, path: str) -> Any:
    value = schema.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise SchemaToolError(ERR_BAD_VALUE.format(keyword=key, path=path))
    return value


def _count(schema: dict[str, Any], key: str, path: str) -> int | None:
    value = schema.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise SchemaToolError(ERR_BAD_VALUE.format(keyword=key, path=path))
    return value


def _types(schema: dict[str, Any], path: str) -> tuple[list[str], bool]:
    declared = schema.get("type")
    if declared is None:
        return [], False
    names = declared if isinstance(declared, list) else [declared]
    if not names or not all(isinstance(name, str) for name in names):
        raise SchemaToolError(ERR_BAD_VALUE.format(keyword="type", path=path))
    nullable = "null" in names
    return [name for name in names if name != "null"], nullable


def _model_name(base: str) -> str:
    cleaned = re.sub(r"\W", "_", base).strip("_") or "Args"
    return "".join(part[:1].upper() + part[1:] for part in cleaned.split("_") if part) or "Args"


def _annotation(schema: Any, path: str, model_name: str, depth: int) -> Any:
    """The type annotation (with constraints) for one JSON schema node."""
    if depth > MAX_DEPTH:
        raise SchemaToolError(ERR_TOO_DEEP.format(path=path))
    if not isinstance(schema, dict):
        raise SchemaToolError(ERR_BAD_VALUE.format(keyword="schema", path=path))
    _check_keywords(schema, path)
    types, nullable = _types(schema, path)
    description = schema.get("description")
    annotation: Any
    if "const" in schema or "enum" in schema:
        values = [schema["const"]] if "const" in schema else schema["enum"]
        if not isinstance(values, list) or not values:
            raise SchemaToolError(ERR_BAD_VALUE.format(keyword="enum", path=path))
        if any(isinstance(value, (dict, list)) for value in values):
            raise SchemaToolError(ERR_BAD_VALUE.format(keyword="enum", path=path))
        nullable = nullable or None in values
        annotation = Literal[tuple(value for value in values if value is not None)]
    elif len(types) > 1:
        raise SchemaToolError(ERR_UNSUPPORTED_TYPE.format(type=types, path=path))
    elif not types:
        if nullable:
            return Annotated[None, Field(description=description)]
        raise SchemaToolError(ERR_NO_TYPE.format(path=path))
    else:
        annotation = _typed(schema, types[0], path, model_name, depth)
    if nullable:
        annotation = annotation | None
    return Annotated[annotation, Field(description=description)] if description else annotation


def _typed(schema: dict[str, Any], kind: str, path: str, model_name: str, depth: int) -> Any:
    if kind == "string":
        return _string(schema, path)
    if kind in ("integer", "number"):
        base = StrictInt if kind == "integer" else StrictFloat
        constraints = {
            "ge": _number(schema, "minimum", path),
            "le": _number(schema, "maximum", path),
            "gt": _number(schema, "exclusiveMinimum", path),
            "lt": _number(schema, "exclusiveMaximum", path),
            "multiple_of": _number(schema, "multipleOf", path),
        }
        constraints = {key: value for key, value in constraints.items() if value is not None}
        return Annotated[base, Field(**constraints)] if constraints else base
    if kind == "boolean":
        return StrictBool
    if kind == "array":
        if "items" not in schema:
            raise SchemaToolError(ERR_BAD_VALUE.format(keyword="items", path=path))
        item = _annotation(schema["items"], f"{path}[]", model_name, depth + 1)
        sizes = {
            "min_length": _count(schema, "minItems", path),
            "max_length": _count(schema, "maxItems", path),
        }
        sizes = {key: value for key, value in sizes.items() if value is not None}
        return Annotated[list[item], Field(**sizes)] if sizes else list[item]
    if kind == "object":
        return _object_model(schema, path, model_name, depth + 1)
    raise SchemaToolError(ERR_UNSUPPORTED_TYPE.format(type=kind, path=path))


def _string(schema: dict[str, Any], path: str) -> Any:
    fmt = schema.get("format")
    if fmt in FORMATS:
        return FORMATS[fmt]
    pattern = schema.get("pattern")
    if fmt == "email":
        pattern = pattern or EMAIL_PATTERN
    elif fmt == "uri":
        pattern = pattern or URI_PATTERN
    elif fmt is not None:
        raise SchemaToolError(ERR_UNSUPPORTED_FORMAT.format(format=fmt, path=path))
    if pattern is not None:
        if not isinstance(pattern, str):
            raise SchemaToolError(ERR_BAD_VALUE.format(keyword="pattern", path=path))
        try:
            re.compile(pattern)
        except re.error as error:
            raise SchemaToolError(ERR_BAD_PATTERN.format(path=path, error=error)) from error
    constraints = {
        "min_length": _count(schema, "minLength", path),
        "max_length": _count(schema, "maxLength", path),
        "pattern": pattern,
    }
    constraints = {key: value for key, value in constraints.items() if value is not None}
    return Annotated[StrictStr, Field(**constraints)] if constraints else StrictStr


def _field_name(name: str, taken: set[str]) -> str:
    """A Python attribute for a JSON property (which keeps its name as the alias)."""
    candidate = re.sub(r"\W", "_", name)
    if (
        not candidate
        or candidate[0].isdigit()
        or candidate.startswith("_")
        or keyword.iskeyword(candidate)
        or candidate in _RESERVED_FIELD_NAMES
        or candidate.startswith("model_")
    ):
        candidate = f"field_{candidate.lstrip('_')}"
    while candidate in taken:
        candidate += "_"
    taken.add(candidate)
    return candidate


def _object_model(schema: dict[str, Any], path: str, model_name: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise SchemaToolError(ERR_TOO_DEEP.format(path=path))
    properties = schema.get("properties") or {}
    required = schema.get("required") or []
    additional = schema.get("additionalProperties", False)
    if not isinstance(properties, dict) or not isinstance(required, list):
        raise SchemaToolError(ERR_BAD_VALUE.format(keyword="properties", path=path))
    if not isinstance(additional, bool):
        raise SchemaToolError(
            ERR_UNSUPPORTED_KEYWORD.format(keyword="additionalProperties (schema)", path=path)
        )
    for name in required:
        if name not in properties:
            raise SchemaToolError(ERR_REQUIRED_UNKNOWN.format(name=name, path=path))
    fields: dict[str, Any] = {}
    taken: set[str] = set()
    for name, subschema in properties.items():
        child_path = f"{path}.{name}"
        child_model = f"{model_name}_{name}"
        annotation = _annotation(subschema, child_path, child_model, depth)
        attribute = _field_name(name, taken)
        alias = name if attribute != name else None
        if name in required:
            fields[attribute] = (annotation, Field(..., alias=alias))
        else:
            # Optional means "may be left out": the default is not validated, but an
            # explicit null is refused unless the schema allows null.
            default = subschema.get("default") if isinstance(subschema, dict) else None
            fields[attribute] = (annotation, Field(default=default, alias=alias))
    config = ConfigDict(
        extra="allow" if additional else "forbid",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        title=_model_name(model_name),
    )
    return create_model(_model_name(model_name), __config__=config, **fields)


def model_from_schema(name: str, parameters: dict[str, Any] | None) -> type[BaseModel]:
    """A pydantic model for an OpenAI function's ``parameters`` schema."""
    parameters = parameters or {"type": "object", "properties": {}}
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        raise SchemaToolError(ERR_NOT_OBJECT.format(path="$"))
    _check_keywords(parameters, "$")
    return _object_model(parameters, "$", f"{name}_args", depth=1)


def definition_from_openai(tool: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """``(name, description, parameters)`` from ``{"type": "function", "function":
    {...}}`` or from the bare function object."""
    function = tool.get("function", tool) if isinstance(tool, dict) else {}
    name = function.get("name", "")
    if not isinstance(name, str) or not _TOOL_NAME_RE.match(name):
        raise SchemaToolError(ERR_TOOL_NAME.format(name=name))
    return name, str(function.get("description", "")), function.get("parameters") or {}


# --- ToolDefinition rows -> Tool ----------------------------------------------------


def http_handler(*, workflow_id: int, tool_name: str, url: str, credential_name: str) -> Any:
    """A handler that POSTs the validated arguments, signed with the workflow's
    credential. The credential is read at call time, so a rotation applies at once."""

    def handle(ctx: ToolContext, args: BaseModel) -> dict[str, Any]:
        if not credential_name:
            raise ToolError(ERR_NO_CREDENTIAL.format(name=tool_name))
        arguments = args.model_dump(mode="json", by_alias=True)
        # Side effects carry the execution's key (Tool.run insists on one); a read
        # without one gets a key from its arguments, so repeats are recognisable.
        key = ctx.idempotency_key or f"read:{tool_name}:{arguments_hash(arguments)}"
        try:
            secret = credential_get(workflow=workflow_id, name=credential_name)
            connector = HttpConnector(url, secret)
            response = connector.post(
                {
                    "tool": tool_name,
                    "workflow": getattr(ctx.workflow, "slug", workflow_id),
                    "principal": ctx.principal,
                    "arguments": arguments,
                },
                idempotency_key=key,
            )
        except (CredentialError, ConnectorConfigError) as error:
            raise ToolError(str(error)) from error
        except ConnectorError as error:
            if error.transient:
                raise TransientToolError(str(error)) from error
            raise ToolError(str(error)) from error
        body = response["body"]
        return body if isinstance(body, dict) else {"status": response["status"], "body": body}

    return handle


@functools.lru_cache(maxsize=512)
def _cached_model(name: str, parameters_json: str) -> type[BaseModel]:
    # Building a model takes about a millisecond; the registry is built per run.
    return model_from_schema(name, json.loads(parameters_json))


def tool_from_definition(definition: ToolDefinition) -> Tool:
    if not _TOOL_NAME_RE.match(definition.name):
        raise SchemaToolError(ERR_TOOL_NAME.format(name=definition.name))
    if definition.risk_class not in RiskClass.values:
        raise SchemaToolError(
            ERR_RISK_CLASS.format(name=definition.name, risk=definition.risk_class)
        )
    try:
        args_model = _cached_model(definition.name, canonical_json(definition.parameters or {}))
    except SchemaToolError as error:
        raise SchemaToolError(ERR_DEFINITION.format(name=definition.name, error=error)) from error
    return Tool(
        name=definition.name,
        description=definition.description,
        args_model=args_model,
        risk_class=definition.risk_class,
        handler=http_handler(
            workflow_id=definition.workflow_id,
            tool_name=definition.name,
            url=definition.endpoint_url,
            credential_name=definition.credential_name,
        ),
        # A remote endpoint's answers are not ours to call stable.
        cacheable=False,
        untrusted_output=definition.untrusted_output,
        tags=("http", "schema"),
    )


def tools_from_definitions(workflow: Any) -> list[Tool]:
    """The workflow's registered tools, typed. One bad definition raises
    ``SchemaToolError`` naming it, rather than loading a tool set silently short."""
    definitions = ToolDefinition.objects.filter(workflow_id=getattr(workflow, "pk", workflow))
    return [tool_from_definition(definition) for definition in definitions.order_by("name")]

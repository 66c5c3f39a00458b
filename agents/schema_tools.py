"""Tools from OpenAI function definitions: an existing agent's tool set, typed.

``model_from_schema`` turns a function's JSON-schema ``parameters`` into a
pydantic model when the tools are loaded, so the model's arguments are
validated exactly like a hand-written tool's. Supported: ``string``,
``integer``, ``number``, ``boolean``, ``array``, ``object`` (nested), ``null``
in a type list, ``enum``, ``const``, ``required``, ``default``,
``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum``/``multipleOf``,
``minLength``/``maxLength``/``pattern``, ``minItems``/``maxItems``, the
formats ``date``, ``date-time``, ``time``, ``uuid``, ``email``, ``uri``, and the
combinators pydantic's ``model_json_schema()`` emits: ``anyOf`` (every optional
field is ``anyOf [X, null]``), ``oneOf`` (exactly one variant must match), an
``allOf`` of one schema, ``$ref`` into ``$defs``/``definitions`` (local references
only; a definition that refers back to itself is refused), and
``additionalProperties`` as a schema for a map without properties. Anything
else raises ``SchemaToolError`` naming the keyword and where it is: a tool whose
contract we cannot enforce is not loaded (fail closed), and only that tool:
``tools_from_definitions`` leaves it out, logs it, and
``tool_definitions_refused`` reports it with its reason.

Objects refuse unknown properties unless the schema says
``"additionalProperties": true``. Integers, numbers and booleans are strict:
``"5"`` is not 5 and ``"yes"`` is not true.

``tools_from_definitions(workflow)`` builds ``agents.tools.base.Tool`` objects
from the workflow's ``ToolDefinition`` rows (those it can); each one's handler POSTs
``{"tool", "workflow", "arguments"}`` through the signed HTTP connector with
the workflow's credential and the execution's idempotency key.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import keyword
import logging
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import unquote

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    WrapValidator,
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
ANNOTATION_KEYWORDS = frozenset(
    {"description", "title", "examples", "$comment", "default", "deprecated", "readOnly",
     "writeOnly"}
)  # fmt: skip
KNOWN_KEYWORDS = ANNOTATION_KEYWORDS | {
    "anyOf",
    "oneOf",
    "allOf",
    "discriminator",
    "$ref",
    "$defs",
    "definitions",
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
ERR_REMOTE_REF = "Only local references (#/$defs/...) are supported, not {ref!r} at {path}."
ERR_REF_MISSING = "The reference {ref!r} at {path} points at nothing in the schema."
ERR_REF_CYCLE = "The schema refers back to itself ({chain}) at {path}; recursive types are refused."
ERR_COMBINED = "{keyword!r} together with {others} at {path} is not supported."
ERR_ALL_OF = "'allOf' is supported with exactly one schema, at {path}."
ERR_UNBUILDABLE = "The schema cannot be built into a model: {error}"
ERR_ONE_OF_MATCHES = "The value matches {count} of the {total} 'oneOf' schemas; exactly one must."

logger = logging.getLogger("tenure.tools")

_TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_RESERVED_FIELD_NAMES = frozenset(dir(BaseModel))


class SchemaToolError(ValueError):
    """A function definition that cannot be turned into a safe typed tool."""


# --- JSON schema -> pydantic ------------------------------------------------------


def _check_keywords(
    schema: dict[str, Any], path: str, known: frozenset[str] = KNOWN_KEYWORDS
) -> None:
    for key in schema:
        if key not in known:
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


def _described(annotation: Any, schema: dict[str, Any]) -> Any:
    description = schema.get("description")
    return Annotated[annotation, Field(description=description)] if description else annotation


def _pointer_parts(ref: str) -> list[str]:
    """``#/$defs/Address`` -> ["$defs", "Address"] (a URI fragment holding a JSON
    pointer: percent-escapes, then ``~1`` for "/" and ``~0`` for "~")."""
    pointer = unquote(ref[1:])
    if not pointer:
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:]]


def _exactly_one(variants: list[Any], path: str) -> WrapValidator:
    """``oneOf``: the value must match exactly one variant (a union accepts any)."""
    adapters = [TypeAdapter(variant) for variant in variants]

    def check(value: Any, handler: Any) -> Any:
        matches = 0
        for adapter in adapters:
            try:
                adapter.validate_python(value)
            except ValidationError:
                continue
            matches += 1
        if matches != 1:
            raise ValueError(ERR_ONE_OF_MATCHES.format(count=matches, total=len(adapters)))
        return handler(value)

    return WrapValidator(check)


class _Builder:
    """Turns one parameters schema into pydantic types. ``$ref`` resolves against the
    whole schema (local references only); each referenced definition becomes one
    type, built once and reused, and a definition that refers back to itself is
    refused (a cycle)."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.built: dict[str, Any] = {}
        self.resolving: list[str] = []

    def annotation(self, schema: Any, path: str, model_name: str, depth: int) -> Any:
        """The type annotation (with constraints) for one JSON schema node."""
        if depth > MAX_DEPTH:
            raise SchemaToolError(ERR_TOO_DEEP.format(path=path))
        if not isinstance(schema, dict):
            raise SchemaToolError(ERR_BAD_VALUE.format(keyword="schema", path=path))
        _check_keywords(schema, path)
        if "$ref" in schema:
            self._alone("$ref", schema, path)
            return _described(self.reference(schema["$ref"], path, depth), schema)
        if "allOf" in schema:
            self._alone("allOf", schema, path)
            parts = schema["allOf"]
            if not isinstance(parts, list) or len(parts) != 1:
                raise SchemaToolError(ERR_ALL_OF.format(path=path))
            inner = self.annotation(parts[0], f"{path}.allOf[0]", model_name, depth)
            return _described(inner, schema)
        for combinator in ("anyOf", "oneOf"):
            if combinator in schema:
                self._alone(combinator, schema, path)
                union = self.union(combinator, schema, path, model_name, depth)
                return _described(union, schema)
        types, nullable = _types(schema, path)
        annotation: Any
        if "const" in schema or "enum" in schema:
            values = [schema["const"]] if "const" in schema else schema["enum"]
            if not isinstance(values, list) or not values:
                raise SchemaToolError(ERR_BAD_VALUE.format(keyword="enum", path=path))
            if any(isinstance(value, (dict, list)) for value in values):
                raise SchemaToolError(ERR_BAD_VALUE.format(keyword="enum", path=path))
            nullable = nullable or None in values
            concrete = tuple(value for value in values if value is not None)
            if not concrete:
                return _described(None, schema)
            annotation = Literal[concrete]
        elif len(types) > 1:
            raise SchemaToolError(ERR_UNSUPPORTED_TYPE.format(type=types, path=path))
        elif not types:
            if nullable:
                return _described(None, schema)
            raise SchemaToolError(ERR_NO_TYPE.format(path=path))
        else:
            annotation = self.typed(schema, types[0], path, model_name, depth)
        if nullable:
            annotation = annotation | None
        return _described(annotation, schema)

    def _alone(self, keyword: str, schema: dict[str, Any], path: str) -> None:
        """A combinator stands with annotations only: ``{"$ref": ..., "type": ...}``
        would mean both at once, which we do not enforce (fail closed)."""
        allowed = ANNOTATION_KEYWORDS | {keyword, "$defs", "definitions"}
        if keyword == "oneOf":
            allowed |= {"discriminator"}
        extra = sorted(set(schema) - allowed)
        if extra:
            raise SchemaToolError(
                ERR_COMBINED.format(keyword=keyword, others=", ".join(extra), path=path)
            )

    def reference(self, ref: Any, path: str, depth: int) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SchemaToolError(ERR_REMOTE_REF.format(ref=ref, path=path))
        if ref in self.built:
            return self.built[ref]
        if ref in self.resolving:
            chain = " -> ".join([*self.resolving[self.resolving.index(ref) :], ref])
            raise SchemaToolError(ERR_REF_CYCLE.format(chain=chain, path=path))
        target: Any = self.root
        for part in _pointer_parts(ref):
            if isinstance(target, dict) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                raise SchemaToolError(ERR_REF_MISSING.format(ref=ref, path=path))
        name = _pointer_parts(ref)[-1] if _pointer_parts(ref) else "Root"
        self.resolving.append(ref)
        try:
            built = self.annotation(target, ref, name, depth + 1)
        finally:
            self.resolving.pop()
        self.built[ref] = built
        return built

    def union(
        self, keyword: str, schema: dict[str, Any], path: str, model_name: str, depth: int
    ) -> Any:
        variants = schema[keyword]
        if not isinstance(variants, list) or not variants:
            raise SchemaToolError(ERR_BAD_VALUE.format(keyword=keyword, path=path))
        annotations = [
            self.annotation(variant, f"{path}.{keyword}[{index}]", f"{model_name}_{index}", depth)
            for index, variant in enumerate(variants)
        ]
        annotation = annotations[0] if len(annotations) == 1 else Union[tuple(annotations)]  # noqa: UP007 - built at run time
        if keyword == "oneOf" and len(annotations) > 1:
            return Annotated[annotation, _exactly_one(annotations, path)]
        return annotation

    def typed(
        self, schema: dict[str, Any], kind: str, path: str, model_name: str, depth: int
    ) -> Any:
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
            if kind == "number":
                constraints["allow_inf_nan"] = False
            return Annotated[base, Field(**constraints)] if constraints else base
        if kind == "boolean":
            return StrictBool
        if kind == "array":
            if "items" not in schema:
                raise SchemaToolError(ERR_BAD_VALUE.format(keyword="items", path=path))
            item = self.annotation(schema["items"], f"{path}[]", model_name, depth + 1)
            sizes = {
                "min_length": _count(schema, "minItems", path),
                "max_length": _count(schema, "maxItems", path),
            }
            sizes = {key: value for key, value in sizes.items() if value is not None}
            return Annotated[list[item], Field(**sizes)] if sizes else list[item]
        if kind == "object":
            return self.object_model(schema, path, model_name, depth + 1)
        raise SchemaToolError(ERR_UNSUPPORTED_TYPE.format(type=kind, path=path))

    def object_model(self, schema: dict[str, Any], path: str, model_name: str, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise SchemaToolError(ERR_TOO_DEEP.format(path=path))
        properties = schema.get("properties") or {}
        required = schema.get("required") or []
        additional = schema.get("additionalProperties", False)
        if not isinstance(properties, dict) or not isinstance(required, list):
            raise SchemaToolError(ERR_BAD_VALUE.format(keyword="properties", path=path))
        if isinstance(additional, dict):
            if properties or required:
                raise SchemaToolError(
                    ERR_UNSUPPORTED_KEYWORD.format(
                        keyword="additionalProperties (schema) with properties", path=path
                    )
                )
            # A map (pydantic's dict[str, X]): any keys, each value as the schema says.
            value = self.annotation(additional, f"{path}.*", model_name, depth)
            return dict[StrictStr, value]
        if not isinstance(additional, bool):
            raise SchemaToolError(ERR_BAD_VALUE.format(keyword="additionalProperties", path=path))
        for name in required:
            if name not in properties:
                raise SchemaToolError(ERR_REQUIRED_UNKNOWN.format(name=name, path=path))
        fields: dict[str, Any] = {}
        taken: set[str] = set()
        for name, subschema in properties.items():
            child_path = f"{path}.{name}"
            child_model = f"{model_name}_{name}"
            annotation = self.annotation(subschema, child_path, child_model, depth)
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


def model_from_schema(name: str, parameters: dict[str, Any] | None) -> type[BaseModel]:
    """A pydantic model for an OpenAI function's ``parameters`` schema (what
    ``model_json_schema()`` of a pydantic model gives, too)."""
    parameters = parameters or {"type": "object", "properties": {}}
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        raise SchemaToolError(ERR_NOT_OBJECT.format(path="$"))
    _check_keywords(parameters, "$")
    builder = _Builder(parameters)
    if "$ref" in parameters:
        # A model that refers to itself puts its whole schema in $defs, under a root $ref.
        model = builder.annotation(parameters, "$", f"{name}_args", depth=0)
        if get_origin(model) is Annotated:
            model = get_args(model)[0]
    else:
        model = builder.object_model(parameters, "$", f"{name}_args", depth=1)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise SchemaToolError(ERR_NOT_OBJECT.format(path="$"))  # a bare map has no fields
    return model


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
def _cached_model(name: str, parameters_json: str) -> type[BaseModel] | SchemaToolError:
    """The model, or why it cannot be built (kept too: a broken definition is not
    rebuilt, and re-logged, every time a registry is built). Building a model takes
    about a millisecond; the registry is built per run."""
    try:
        return model_from_schema(name, json.loads(parameters_json))
    except SchemaToolError as error:
        return error
    except Exception as error:  # noqa: BLE001 - a definition is data: whatever fails, refuse it
        return SchemaToolError(ERR_UNBUILDABLE.format(error=error))


def tool_from_definition(definition: ToolDefinition) -> Tool:
    if not _TOOL_NAME_RE.match(definition.name):
        raise SchemaToolError(ERR_TOOL_NAME.format(name=definition.name))
    if definition.risk_class not in RiskClass.values:
        raise SchemaToolError(
            ERR_RISK_CLASS.format(name=definition.name, risk=definition.risk_class)
        )
    args_model = _cached_model(definition.name, canonical_json(definition.parameters or {}))
    if isinstance(args_model, SchemaToolError):
        error = args_model
        raise SchemaToolError(ERR_DEFINITION.format(name=definition.name, error=error)) from error
    return Tool(
        name=definition.name,
        description=definition.description,
        args_model=args_model,
        risk_class=definition.risk_class,
        handler=_handler_for(definition),
        # A remote endpoint's answers are not ours to call stable.
        cacheable=False,
        untrusted_output=definition.untrusted_output,
        tags=("http", "schema"),
    )


def _handler_for(definition: ToolDefinition) -> Any:
    """An upstream MCP server's tool (``mcp+http(s)://`` endpoint, imported by the MCP
    gateway) is called over MCP; any other definition over the signed HTTP connector."""
    if definition.endpoint_url.startswith(("mcp+http://", "mcp+https://")):
        from agents.mcp_upstream import mcp_handler

        return mcp_handler(
            tool_name=definition.name, url=definition.endpoint_url.removeprefix("mcp+")
        )
    return http_handler(
        workflow_id=definition.workflow_id,
        tool_name=definition.name,
        url=definition.endpoint_url,
        credential_name=definition.credential_name,
    )


@dataclass(frozen=True)
class RefusedTool:
    """A tool definition that could not be loaded, and why."""

    name: str
    reason: str


def _definitions(workflow: Any, names: Iterable[str] | None) -> Any:
    definitions = ToolDefinition.objects.filter(workflow_id=getattr(workflow, "pk", workflow))
    if names is not None:
        definitions = definitions.filter(name__in=list(names))
    return definitions.order_by("name")


def _load(definitions: Iterable[ToolDefinition]) -> tuple[list[Tool], list[RefusedTool]]:
    tools: list[Tool] = []
    refused: list[RefusedTool] = []
    for definition in definitions:
        try:
            tools.append(tool_from_definition(definition))
        except SchemaToolError as error:
            reason = str(error.__cause__ or error)
            refused.append(RefusedTool(name=definition.name, reason=reason))
            _warn_once(definition, reason)
    return tools, refused


_warned: set[tuple[int, str, str]] = set()


def _warn_once(definition: ToolDefinition, reason: str) -> None:
    key = (definition.workflow_id, definition.name, reason)
    if key in _warned:
        return
    if len(_warned) > 1024:
        _warned.clear()
    _warned.add(key)
    logger.warning(
        "tool definition %r of workflow %s is not loaded: %s",
        definition.name,
        definition.workflow_id,
        reason,
    )


def tools_from_definitions(workflow: Any, names: Iterable[str] | None = None) -> list[Tool]:
    """The workflow's registered tools (or those of them named), typed. A definition
    that cannot be enforced is left out, on its own, and logged; the others load
    (``tool_definitions_refused`` says which were left out and why)."""
    return _load(_definitions(workflow, names))[0]


def tool_definitions_refused(workflow: Any) -> list[RefusedTool]:
    """The workflow's tool definitions that could not be loaded, each with its reason
    (shown on the workflow page)."""
    return _load(_definitions(workflow, None))[1]

"""The reviewer's view of a tool: find it, and turn its pydantic schema into form fields.

The registry lives in ``agents.tools``; reviews only reads it. A tool the
registry does not know (renamed, removed, or a registry that is not there)
still gets a plain form, one text field per proposed argument.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pydantic
from django.conf import settings
from django.utils.formats import localize

from governance import hygiene

if TYPE_CHECKING:
    from governance.models import Workflow

ERR_NOT_JSON = "Enter valid JSON."
ERR_NOT_A_WHOLE_NUMBER = "Enter a whole number."
ERR_NOT_A_NUMBER = "Enter a number."
ERR_REQUIRED = "This field is required."

# Form inputs are prefixed so argument names never collide with the form's own fields.
ARG_PREFIX = "arg-"


def tool_for(
    *, workflow: Workflow, name: str, enabled: bool | None = None, defined: bool | None = None
) -> Any | None:
    """The registered Tool called ``name`` for this workflow, or None.

    ``enabled`` says whether the workflow holds an enabled grant for the tool,
    when the caller has already read it: then only that one tool is looked up.
    ``defined`` says whether the workflow registered a tool of that name from a
    JSON schema (read with the grant): when it did not, a name that is not built
    in resolves to None without asking the registry (which reads the definitions).
    """
    try:
        from agents.tools import builtin_tool, registry_for
    except ImportError:  # the agent runtime's registry is optional for reviewing
        return None
    if enabled is False:
        return None  # the registry holds enabled grants only
    if enabled:
        builtin = builtin_tool(name)
        if builtin is not None:
            return builtin  # as in the registry: a built-in name wins over a definition
        if defined is False:
            return None
    registry = registry_for(workflow, granted={name}) if enabled else registry_for(workflow)
    if isinstance(registry, Mapping):
        return registry.get(name)
    if isinstance(registry, Iterable):
        return next((tool for tool in registry if getattr(tool, "name", None) == name), None)
    return None


@dataclass
class ArgField:
    """One input of the edit form, described from the JSON schema."""

    name: str
    label: str
    kind: str  # text, textarea, integer, number, boolean, select, json
    required: bool = False
    value: Any = ""
    choices: list[str] = field(default_factory=list)
    minimum: Any = None
    maximum: Any = None
    exclusive_minimum: bool = False
    min_length: int | None = None
    max_length: int | None = None
    pattern: str = ""
    help: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def input_name(self) -> str:
        return f"{ARG_PREFIX}{self.name}"

    @property
    def input_id(self) -> str:
        return f"id_{ARG_PREFIX}{self.name}"

    @property
    def display_value(self) -> str:
        if self.kind == "json":
            return self.value if isinstance(self.value, str) else json.dumps(self.value)
        if self.value is None:
            return ""
        return str(self.value)

    @property
    def step(self) -> str:
        return "1" if self.kind == "integer" else "any"

    @property
    def constraint(self) -> str:
        """The bounds, as the form states them under the input (the pattern apart)."""
        parts = []
        if self.minimum is not None:
            word = "more than" if self.exclusive_minimum else "min"
            parts.append(f"{word} {number(self.minimum)} ")
        if self.maximum is not None:
            parts.append(f"max {number(self.maximum)} ")
        if self.max_length:
            parts.append(f"up to {number(self.max_length)} characters ")
        return "".join(parts)


def number(value: Any) -> str:
    """A number as the template engine prints it (``localize``), with the common
    case, a whole number without thousand separators, made without its lookups."""
    if type(value) is int and not settings.USE_THOUSAND_SEPARATOR:
        return str(value)
    return str(localize(value))


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref", "")
    if ref.startswith("#/$defs/"):
        target = schema.get("$defs", {}).get(ref.rsplit("/", 1)[1], {})
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _describe(schema: dict[str, Any], node: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Collapse Optional[...] and Decimal's number-or-string into one node."""
    node = _resolve(schema, node)
    variants = node.get("anyOf") or node.get("oneOf")
    if not variants:
        return node, False
    variants = [_resolve(schema, v) for v in variants]
    nullable = any(v.get("type") == "null" for v in variants)
    concrete = [v for v in variants if v.get("type") != "null"]
    numeric = [v for v in concrete if v.get("type") in ("number", "integer")]
    chosen = dict(numeric[0] if numeric else (concrete[0] if concrete else {}))
    for key in ("title", "description", "default"):
        if key in node:
            chosen.setdefault(key, node[key])
    return chosen, nullable


def _kind(node: dict[str, Any]) -> str:
    if "enum" in node or "const" in node:
        return "select"
    kind = node.get("type")
    if kind == "integer":
        return "integer"
    if kind == "number":
        return "number"
    if kind == "boolean":
        return "boolean"
    if kind in ("array", "object"):
        return "json"
    if kind == "string" and (node.get("maxLength") or 0) > 200:
        return "textarea"
    return "text"


def _bound(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def fields_from_schema(schema: dict[str, Any], values: Mapping[str, Any]) -> list[ArgField]:
    required = set(schema.get("required", []))
    fields = []
    for name, raw in schema.get("properties", {}).items():
        node, nullable = _describe(schema, raw)
        kind = _kind(node)
        choices = [str(c) for c in node.get("enum", [node["const"]] if "const" in node else [])]
        fields.append(
            ArgField(
                name=name,
                label=node.get("title") or name.replace("_", " ").capitalize(),
                kind=kind,
                required=name in required and not nullable,
                value=values.get(name, node.get("default", "")),
                choices=choices,
                minimum=_bound(node.get("minimum", node.get("exclusiveMinimum"))),
                maximum=_bound(node.get("maximum", node.get("exclusiveMaximum"))),
                exclusive_minimum="minimum" not in node and "exclusiveMinimum" in node,
                min_length=node.get("minLength"),
                max_length=node.get("maxLength"),
                pattern=node.get("pattern", ""),
                help=node.get("description", ""),
            )
        )
    return fields


# Per args model, its form fields (filled with the schema's defaults), built once per
# process: pydantic's model_json_schema() costs more than the rest of a card. Weak
# keys, so models built at run time (tools registered from JSON schemas) can go.
_SCHEMA_FIELDS: weakref.WeakKeyDictionary[type, tuple[ArgField, ...]] = weakref.WeakKeyDictionary()


def _schema_fields(args_model: type[pydantic.BaseModel]) -> tuple[ArgField, ...]:
    fields = _SCHEMA_FIELDS.get(args_model)
    if fields is None:
        fields = tuple(fields_from_schema(args_model.model_json_schema(), {}))
        _SCHEMA_FIELDS[args_model] = fields
    return fields


def arg_types(args_model: type[pydantic.BaseModel]) -> dict[str, str]:
    """Argument name -> the type the card shows, in the model's field order."""
    return {
        item.name: "enum" if item.kind == "select" else item.kind
        for item in _schema_fields(args_model)
    }


def edit_fields(tool: Any | None, arguments: Mapping[str, Any]) -> list[ArgField]:
    """The edit form's fields, filled with ``arguments``."""
    if tool is not None:
        # Fresh copies: a card with errors writes into its fields.
        return [
            replace(item, value=arguments.get(item.name, item.value), errors=[])
            for item in _schema_fields(tool.args_model)
        ]
    # Unknown tool: one field per argument the agent proposed; anything that is not a
    # string is edited as JSON, so numbers, booleans and lists keep their types.
    return [
        ArgField(
            name=name,
            label=name.replace("_", " ").capitalize(),
            kind="text" if isinstance(value, str) else "json",
            value=value,
        )
        for name, value in arguments.items()
    ]


def parse_submitted(
    fields: list[ArgField], data: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Turn posted strings into typed values; the model validates them afterwards."""
    values: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for item in fields:
        raw = data.get(item.input_name)
        if item.kind == "boolean":
            values[item.name] = raw in ("on", "true", "1")
            continue
        raw = (raw or "").strip()
        unstorable = hygiene.text_problem(raw)
        if unstorable:
            errors[item.name] = [unstorable]
            continue
        if raw == "":
            if item.required:
                errors[item.name] = [ERR_REQUIRED]
            elif item.name in data or item.input_name in data:
                values[item.name] = None
            continue
        if item.kind == "json":
            try:
                parsed = hygiene.json_loads_strict(raw)
            except ValueError as exc:
                errors[item.name] = [
                    hygiene.ERR_NOT_FINITE if str(exc) == hygiene.ERR_NOT_FINITE else ERR_NOT_JSON
                ]
                continue
            problem = hygiene.first_problem(parsed)
            if problem is not None:  # "\u0000" or a lone "\ud800" escaped in the JSON
                errors[item.name] = [problem.message]
                continue
            values[item.name] = parsed
        elif item.kind == "integer":
            try:
                values[item.name] = int(raw)
            except ValueError:
                errors[item.name] = [ERR_NOT_A_WHOLE_NUMBER]
        else:
            # Numbers stay strings: pydantic turns "42.50" into Decimal or float exactly.
            values[item.name] = raw
    return values, errors


def _storable(
    arguments: dict[str, Any],
) -> tuple[dict[str, Any] | None, dict[str, list[str]]]:
    problem = hygiene.first_problem(arguments)
    if problem is None:
        return arguments, {}
    key = str(problem.path[0]) if problem.path else "__all__"
    return None, {key: [problem.message]}


def validate_arguments(
    tool: Any | None, arguments: dict[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, list[str]]]:
    """Validate with the tool's model. Returns (normalised JSON arguments, field errors)."""
    if tool is None:
        # No schema to hold them to: they must at least be storable.
        return _storable(arguments)
    try:
        model = tool.args_model.model_validate(arguments)
    except pydantic.ValidationError as exc:
        errors: dict[str, list[str]] = {}
        for error in exc.errors(include_url=False):
            key = str(error["loc"][0]) if error.get("loc") else "__all__"
            errors.setdefault(key, []).append(error["msg"])
        return None, errors
    # What the model accepts but no record can hold ("NaN" read into a float, a NUL).
    refused = _storable(model.model_dump(by_alias=True))
    if refused[0] is None:
        return refused
    return model.model_dump(mode="json"), {}


def normalised(tool: Any | None, arguments: dict[str, Any]) -> dict[str, Any]:
    """The proposal's arguments as the model would dump them (so a diff compares like
    with like); unchanged when they do not validate."""
    final, errors = validate_arguments(tool, arguments)
    return final if final is not None and not errors else arguments


def _python_values(tool: Any | None, arguments: Mapping[str, Any]) -> Mapping[str, Any]:
    """Typed values, so 42 and "42.00" compare equal for a Decimal field."""
    if tool is None:
        return arguments
    try:
        return tool.args_model.model_validate(dict(arguments)).model_dump()
    except pydantic.ValidationError:
        return arguments


def arguments_diff(
    before: Mapping[str, Any], after: Mapping[str, Any], tool: Any | None = None
) -> dict[str, list[Any]]:
    """field -> [proposed, final], only for fields whose typed value changed."""
    typed_before, typed_after = _python_values(tool, before), _python_values(tool, after)
    return {
        key: [before.get(key), after.get(key)]
        for key in sorted(set(before) | set(after))
        if typed_before.get(key) != typed_after.get(key)
    }

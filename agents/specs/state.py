"""A workflow's declared state as one canonical dict: read from the database (what
``export`` writes) or built from a spec (what ``apply`` aims for). Both sides use
the same shape and the same normalisation, so a plan is a comparison of two dicts
and an export applied on a fresh database exports byte for byte the same."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import yaml
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from guardian.models import GroupObjectPermission

from agents.connectors.sql_template import POLICY_KEY, QueryTemplate, SqlTemplateError
from agents.models import ToolDefinition
from agents.schema_tools import SchemaToolError, model_from_schema
from agents.specs.schema import SPEC_VERSION, SpecError, ToolSpec, WorkflowSpec
from agents.tools import BUILTIN_TOOLS
from agents.tools.query_templates import parameters_schema
from governance.change_control import caps_clean
from governance.models import Workflow
from governance.permissions import MANAGE, REVIEW

BUDGETS = (
    "max_tool_calls",
    "max_tokens",
    "max_seconds",
    "max_cost_usd",
    "loop_threshold",
    "daily_budget_usd",
    "cost_target_usd",
)
# Spec name -> Workflow field.
GATE = {
    "min_decisions": "gate_min_decisions",
    "min_agreement": "gate_min_agreement",
    "min_item_agreement": "gate_min_item_agreement",
    "min_coverage": "gate_min_coverage",
    "window_days": "gate_window_days",
    "critical_lookback": "gate_critical_lookback",
    "counts_imported": "gate_counts_imported",
    "min_supervised_decisions": "gate_min_supervised_decisions",
    "agreement_floor": "agreement_floor",
    "tool_error_budget": "tool_error_budget",
    "sample_rate": "sample_rate",
    "review_sla_minutes": "review_sla_minutes",
    "trace_retention_days": "trace_retention_days",
}
# Policy keys the spec writes (``tools``, ``credentials`` and ``mcp_servers`` are the
# spec's own: argument roles, credential references, MCP servers, read by the runtime).
TOOL_FIELDS = (
    "description",
    "risk",
    "parameters",
    "endpoint",
    "credential",
    "untrusted_output",
    "server",
    "sql",
    "max_rows",
    "timeout_ms",
    "database",
)

ERR_NO_OWNER = "owner: there is no user called {name!r}"
ERR_NO_GROUP = "access.{role}: there is no group called {name!r}"
ERR_NO_BUILTIN = "tools[{index}]: there is no built-in tool called {name!r}"
ERR_BUILTIN_RISK = (
    "tools[{index}].risk: the built-in tool {name!r} is {actual!r}; a spec cannot change it"
)
ERR_TAKEN = "tools[{index}].name: a built-in tool is called {name!r}; choose another name"
ERR_TOOL_SCHEMA = "tools[{index}].parameters: {error}"
ERR_TEMPLATE = "tools[{index}].sql: {error}"


def _decimal_text(value: Any, places: int | None = None) -> str:
    number = Decimal(str(value))
    if places is not None:
        number = number.quantize(Decimal(1).scaleb(-places))
    return str(number)


def _field_value(name: str, value: Any) -> Any:
    """A Workflow setting as the state holds it: decimals as text with the column's
    places (so 0.25 and 0.2500 are one value), the rest as they are."""
    field = Workflow._meta.get_field(name)
    if value is None:
        value = field.get_default()
    if getattr(field, "decimal_places", None) is not None:
        return _decimal_text(value, field.decimal_places)
    return value


def _numbers(values: dict[str, Any]) -> dict[str, str]:
    return {key: _decimal_text(v) for key, v in values.items() if v not in (None, "")}


def _drop_empty(values: dict[str, Any]) -> dict[str, Any]:
    return {key: v for key, v in values.items() if v not in (None, "", {}, [], False)}


def _policy_state(policy: dict[str, Any]) -> dict[str, Any]:
    allowlists = policy.get("allowlists") or {}
    state: dict[str, Any] = {}
    if policy.get("always_approve") is not None:
        state["always_approve"] = list(policy["always_approve"])
    state["checks"] = list(policy.get("checks") or [])
    state["allowlists"] = {
        key: sorted({v.strip() for v in allowlists[key] if v.strip()})
        for key in ("groups", "email_domains")
        if allowlists.get(key) is not None
    }
    state["caps"] = {
        tool: _sorted(_numbers(caps)) for tool, caps in sorted((policy.get("caps") or {}).items())
    }
    if policy.get("two_approvers") is not None:
        state["two_approvers"] = _sorted(policy["two_approvers"])
    return state


def _sorted(value: Any) -> Any:
    """Mappings with their keys sorted, all the way down: the database's JSON keeps
    keys in its own order (PostgreSQL's jsonb by length), a file in the author's."""
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def _tool_state(entry: dict[str, Any]) -> dict[str, Any]:
    """One tool, in the canonical key order, without empty values."""
    state: dict[str, Any] = {"name": entry["name"], "kind": entry["kind"]}
    for key in TOOL_FIELDS:
        value = entry.get(key)
        if value not in (None, "", False, {}):
            state[key] = _sorted(value)
    for key in ("caps", "limits", "arguments"):
        if entry.get(key):
            state[key] = _sorted(entry[key])
    return state


def _access_from_db(workflow: Workflow) -> dict[str, list[str]]:
    held = GroupObjectPermission.objects.filter(
        content_type__app_label="governance",
        content_type__model="workflow",
        object_pk=str(workflow.pk),
        permission__codename__in=[REVIEW.split(".")[1], MANAGE.split(".")[1]],
    ).values_list("group__name", "permission__codename")
    reviewers = sorted({group for group, codename in held if codename == "review_workflow"})
    managers = sorted({group for group, codename in held if codename == "manage_workflow"})
    return {"reviewers": reviewers, "managers": managers}


def state_from_db(workflow: Workflow) -> dict[str, Any]:
    """What the database says the workflow is, as a spec would declare it."""
    policy = workflow.policy if isinstance(workflow.policy, dict) else {}
    declared = policy.get("tools") or {}
    templates = policy.get(POLICY_KEY) or {}
    limits = policy.get("limits") or {}
    definitions = {d.name: d for d in ToolDefinition.objects.filter(workflow=workflow)}
    tools: list[dict[str, Any]] = []
    for grant in workflow.grants.filter(enabled=True).order_by("tool"):
        name = grant.tool
        entry: dict[str, Any] = {"name": name}
        if (declared.get(name) or {}).get("kind") == "mcp":
            continue  # the gateway's grant of an MCP tool: listed below, once
        if name in BUILTIN_TOOLS:
            entry |= {"kind": "builtin", "risk": str(BUILTIN_TOOLS[name].risk_class)}
        elif name in definitions:
            d = definitions[name]
            entry |= {
                "kind": "http",
                "description": d.description,
                "risk": d.risk_class,
                "parameters": d.parameters,
                "endpoint": d.endpoint_url,
                "credential": d.credential_name,
                "untrusted_output": d.untrusted_output,
            }
        elif name in templates:
            config = templates[name]
            entry |= {"kind": "query_template", "risk": "read"}
            entry |= {k: config.get(k) for k in ("description", "sql", "max_rows", "timeout_ms",
                                                 "database", "parameters")}  # fmt: skip
        else:
            continue
        entry["caps"] = _numbers(grant.caps or {})
        entry["limits"] = _numbers(limits.get(name) or {})
        entry["arguments"] = (declared.get(name) or {}).get("arguments") or {}
        tools.append(_tool_state(entry))
    for name, config in sorted(declared.items()):
        if config.get("kind") == "mcp":
            entry = {"name": name, **config, "limits": _numbers(limits.get(name) or {})}
            tools.append(_tool_state(entry))
    tools.sort(key=lambda tool: tool["name"])
    owner = workflow.owner.get_username() if workflow.owner_id else None
    state: dict[str, Any] = {"version": SPEC_VERSION, "slug": workflow.slug, "name": workflow.name}
    if owner:
        state["owner"] = owner
    state |= {
        "instructions": workflow.description,
        "models": {"small": workflow.model_small, "large": workflow.model_large},
        "budgets": {name: _field_value(name, getattr(workflow, name)) for name in BUDGETS},
        "gate": {key: _field_value(f, getattr(workflow, f)) for key, f in GATE.items()},
        "trusted_fields": sorted(workflow.trusted_fields or []),
        "policy": _policy_state(policy),
        "access": _access_from_db(workflow),
        "credentials": _sorted(policy.get("credentials") or {}),
        "mcp_servers": _sorted(policy.get("mcp_servers") or {}),
        "tools": tools,
    }
    return state


def _tool_from_spec(index: int, tool: ToolSpec) -> dict[str, Any]:
    entry: dict[str, Any] = tool.model_dump(
        mode="json", exclude={"caps", "limits", "arguments", "level", "schema_file"}
    )
    if tool.kind != "builtin" and tool.name in BUILTIN_TOOLS:
        raise SpecError(ERR_TAKEN.format(index=index, name=tool.name))
    if tool.kind == "builtin":
        builtin = BUILTIN_TOOLS.get(tool.name)
        if builtin is None:
            raise SpecError(ERR_NO_BUILTIN.format(index=index, name=tool.name))
        if tool.risk is not None and tool.risk != builtin.risk_class:
            raise SpecError(
                ERR_BUILTIN_RISK.format(index=index, name=tool.name, actual=str(builtin.risk_class))
            )
        entry["risk"] = str(builtin.risk_class)
        entry["description"] = ""
    elif tool.kind == "http":
        try:
            model_from_schema(tool.name, tool.parameters)
        except SchemaToolError as error:
            raise SpecError(ERR_TOOL_SCHEMA.format(index=index, error=error)) from None
    elif tool.kind == "query_template":
        entry["risk"] = "read"
        config = {k: entry.get(k) for k in ("sql", "max_rows", "timeout_ms", "database")}
        try:
            template = QueryTemplate.from_config(
                tool.name, {k: v for k, v in config.items() if v is not None}
            )
            schema = parameters_schema(template, tool.parameters)
            model_from_schema(tool.name, schema)
        except (SqlTemplateError, SchemaToolError) as error:
            raise SpecError(ERR_TEMPLATE.format(index=index, error=error)) from None
    entry["caps"] = (
        caps_clean(tool.caps.model_dump(exclude_none=True)) if tool.kind != "mcp" else {}
    )
    entry["limits"] = _numbers(tool.limits.model_dump(exclude_none=True))
    entry["arguments"] = {name: role.model_dump() for name, role in sorted(tool.arguments.items())}
    return _tool_state(entry)


def state_from_spec(spec: WorkflowSpec) -> dict[str, Any]:
    """What the spec declares, checked against what exists (users, groups, built-in
    tools) and what can be enforced (schemas, templates), before anything is written."""
    User = get_user_model()
    if spec.owner and not User.objects.filter(**{User.USERNAME_FIELD: spec.owner}).exists():
        raise SpecError(ERR_NO_OWNER.format(name=spec.owner))
    for role in ("reviewers", "managers"):
        names = getattr(spec.access, role)
        found = set(Group.objects.filter(name__in=names).values_list("name", flat=True))
        for name in names:
            if name not in found:
                raise SpecError(ERR_NO_GROUP.format(role=role, name=name))
    budgets = spec.budgets.model_dump()
    gate = spec.gate.model_dump()
    policy = spec.policy.model_dump(mode="json", exclude_none=True)
    policy["allowlists"] = spec.policy.allowlists.model_dump(exclude_none=True)
    policy["caps"] = {
        tool: caps.model_dump(exclude_none=True) for tool, caps in spec.policy.caps.items()
    }
    state: dict[str, Any] = {"version": SPEC_VERSION, "slug": spec.slug, "name": spec.name}
    if spec.owner:
        state["owner"] = spec.owner
    state |= {
        "instructions": spec.instructions,
        "models": spec.models.model_dump(),
        "budgets": {name: _field_value(name, budgets[name]) for name in BUDGETS},
        "gate": {key: _field_value(f, gate[key]) for key, f in GATE.items()},
        "trusted_fields": sorted({f.strip() for f in spec.trusted_fields if f.strip()}),
        "policy": _policy_state(policy),
        "access": {
            "reviewers": sorted(set(spec.access.reviewers)),
            "managers": sorted(set(spec.access.managers)),
        },
        "credentials": {
            name: ref.model_dump(exclude_none=True)
            for name, ref in sorted(spec.credentials.items())
        },
        "mcp_servers": {
            name: server.model_dump(exclude_none=True)
            for name, server in sorted(spec.mcp_servers.items())
        },
        "tools": sorted(
            (_tool_from_spec(i, tool) for i, tool in enumerate(spec.tools)),
            key=lambda tool: tool["name"],
        ),
    }
    return state


# --- the state as Workflow columns and policy ---------------------------------------


def settings_of(state: dict[str, Any]) -> dict[str, Any]:
    """The Workflow settings change control governs, from a state."""
    settings: dict[str, Any] = {
        "model_small": state["models"]["small"],
        "model_large": state["models"]["large"],
        "trusted_fields": state["trusted_fields"],
        "policy": policy_of(state),
    }
    settings |= dict(state["budgets"])
    settings |= {GATE[key]: value for key, value in state["gate"].items()}
    return settings


def policy_of(state: dict[str, Any]) -> dict[str, Any]:
    """``Workflow.policy`` for a state: the rules, each tool's limits and argument roles,
    the query templates, credential references and MCP servers."""
    rules = state["policy"]
    policy: dict[str, Any] = {}
    if "always_approve" in rules:
        policy["always_approve"] = rules["always_approve"]
    if rules["checks"]:
        policy["checks"] = rules["checks"]
    if rules["allowlists"]:
        policy["allowlists"] = rules["allowlists"]
    if rules["caps"]:
        policy["caps"] = rules["caps"]
    if "two_approvers" in rules:
        policy["two_approvers"] = rules["two_approvers"]
    limits, declared, templates = {}, {}, {}
    for tool in state["tools"]:
        if tool.get("limits"):
            limits[tool["name"]] = tool["limits"]
        if tool["kind"] == "mcp":
            declared[tool["name"]] = _drop_empty(
                {
                    k: tool.get(k)
                    for k in (
                        "kind",
                        "description",
                        "risk",
                        "server",
                        "untrusted_output",
                        "arguments",
                    )
                }  # fmt: skip
            )
        elif tool.get("arguments"):
            declared[tool["name"]] = {"arguments": tool["arguments"]}
        if tool["kind"] == "query_template":
            templates[tool["name"]] = _drop_empty(
                {
                    k: tool.get(k)
                    for k in (
                        "sql",
                        "description",
                        "max_rows",
                        "timeout_ms",
                        "database",
                        "parameters",
                    )
                }  # fmt: skip
            )
    for key, value in (
        ("limits", limits),
        ("tools", declared),
        (POLICY_KEY, templates),
        ("credentials", state["credentials"]),
        ("mcp_servers", state["mcp_servers"]),
    ):
        if value:
            policy[key] = value
    return policy


# --- YAML ----------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def state_yaml(state: dict[str, Any]) -> str:
    return yaml.dump(
        state, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100, indent=2
    )

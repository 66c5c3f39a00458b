"""The workflow spec file, validated with pydantic.

Every error names the path of the bad field (``tools[1].caps.amount: ...``). A
spec never carries a secret (credentials are named by environment variable or
file) and never raises a level above shadow (levels move only through the gate).
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from agents.models import RiskClass
from governance import hygiene

SPEC_VERSION = 1
ToolKind = Literal["builtin", "http", "mcp", "query_template"]
Role = Literal["money", "recipient", "subject"]

ERR_INLINE_SECRET = "inline secrets are refused: name an environment variable (env: NAME) or a secret file (file: /run/secrets/name) instead"  # noqa: E501, S105 - a message
ERR_ONE_SOURCE = "give exactly one of env or file"
ERR_LEVEL = (
    "level {level!r} refused: a spec never raises a level above shadow; levels move only "
    "through the promotion gate"
)
ERR_KIND_FIELD = "{field} does not apply to a tool of kind {kind!r}"
ERR_KIND_NEEDS = "a tool of kind {kind!r} needs {field}"
ERR_SCHEMA_SOURCE = "give the parameters inline or a schema_file, not both"
ERR_TEMPLATE_RISK = "a query template only reads: its risk is 'read'"
ERR_DUPLICATE_TOOL = "tool {name!r} is declared twice"
ERR_UNKNOWN_CREDENTIAL = "credential {name!r} is not declared under credentials"
ERR_UNKNOWN_SERVER = "MCP server {name!r} is not declared under mcp_servers"
ERR_PATH = "an argument's path is a JSON path into the arguments, like '$.amount'"
ERR_YAML = "{source}: not valid YAML: {error}"
ERR_NOT_MAPPING = "{source}: a spec is a YAML mapping (name: value lines)"
ERR_SCHEMA_FILE = "{source}: {where}: {problem}"
ERR_INVALID = "{source}: the spec is invalid:\n{errors}"
ERR_UNSTORABLE = "{source}: {where}: {problem}"
ERR_TOO_LARGE = "{source}: a spec is at most {limit} bytes"
ERR_MCP_CAPS = (
    "caps of an MCP tool are set on its grant, once the gateway has imported it from its server"
)
MAX_SPEC_BYTES = 1_000_000

SLUG = r"^[a-z0-9][a-z0-9_-]{0,63}$"
TOOL_NAME = r"^[a-zA-Z0-9_-]{1,64}$"
CREDENTIAL_NAME = r"^[a-z0-9][a-z0-9_-]{0,99}$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_PATH_RE = re.compile(r"^\$(\.[A-Za-z_][A-Za-z0-9_-]*|\[\d+\])+$")
_SECRET_KEYS = ("value", "secret", "password", "token", "key")


class SpecError(ValueError):
    """A spec that cannot be read or applied; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _no_level_above_shadow(value: Any) -> Any:
    if value not in (None, "shadow"):
        raise ValueError(ERR_LEVEL.format(level=value))
    return value


class CredentialRef(_Strict):
    env: str | None = Field(default=None, pattern=ENV_NAME)
    file: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _reference_only(cls, data: Any) -> Any:
        if not isinstance(data, dict) or any(key in data for key in _SECRET_KEYS):
            raise ValueError(ERR_INLINE_SECRET)
        return data

    @model_validator(mode="after")
    def _one_source(self) -> CredentialRef:
        if (self.env is None) == (self.file is None):
            raise ValueError(ERR_ONE_SOURCE)
        return self


class ArgumentRole(_Strict):
    role: Role
    path: str

    @field_validator("path")
    @classmethod
    def _json_path(cls, value: str) -> str:
        if not _PATH_RE.match(value):
            raise ValueError(ERR_PATH)
        return value


class Caps(_Strict):
    """Per action (amount, records) and per UTC day (count, total)."""

    amount: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    records: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    count: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    total: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)


class Limits(_Strict):
    """Hard limits per action: above one, the call is denied."""

    amount: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    records: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)


class ToolSpec(_Strict):
    name: str = Field(pattern=TOOL_NAME)
    kind: ToolKind
    description: str = ""
    risk: RiskClass | None = None
    # http: an OpenAI function's parameters (inline or from a file) and its endpoint.
    parameters: dict[str, Any] | None = None
    schema_file: str | None = None
    endpoint: str | None = None
    credential: str | None = Field(default=None, pattern=CREDENTIAL_NAME)
    untrusted_output: bool = False
    # mcp: a tool of a server declared under mcp_servers.
    server: str | None = None
    # query_template: read-only SQL written by an admin, arguments bound.
    sql: str | None = None
    max_rows: int | None = Field(default=None, ge=1)
    timeout_ms: int | None = Field(default=None, ge=1)
    database: str | None = None
    caps: Caps = Field(default_factory=Caps)
    limits: Limits = Field(default_factory=Limits)
    arguments: dict[str, ArgumentRole] = Field(default_factory=dict)
    level: str | None = None

    _check_level = field_validator("level")(_no_level_above_shadow)

    @model_validator(mode="after")
    def _fits_its_kind(self) -> ToolSpec:
        allowed = {
            "builtin": {"risk"},
            "http": {"parameters", "schema_file", "endpoint", "credential", "untrusted_output"},
            "mcp": {"server", "risk", "untrusted_output"},
            "query_template": {"sql", "max_rows", "timeout_ms", "database", "parameters", "risk"},
        }[self.kind]
        for name in ("parameters", "schema_file", "endpoint", "credential", "server", "sql",
                     "max_rows", "timeout_ms", "database"):  # fmt: skip
            if getattr(self, name) is not None and name not in allowed:
                raise ValueError(ERR_KIND_FIELD.format(field=name, kind=self.kind))
        if self.untrusted_output and "untrusted_output" not in allowed:
            raise ValueError(ERR_KIND_FIELD.format(field="untrusted_output", kind=self.kind))
        needs = {
            "http": ("endpoint", "risk"),
            "mcp": ("server", "risk"),
            "query_template": ("sql",),
        }.get(self.kind, ())
        for name in needs:
            if getattr(self, name) is None:
                raise ValueError(ERR_KIND_NEEDS.format(kind=self.kind, field=name))
        if self.kind == "http":
            if self.parameters is not None and self.schema_file is not None:
                raise ValueError(ERR_SCHEMA_SOURCE)
            if self.parameters is None and self.schema_file is None:
                raise ValueError(ERR_KIND_NEEDS.format(kind="http", field="parameters"))
        if self.kind == "mcp" and self.caps.model_dump(exclude_none=True):
            raise ValueError(ERR_MCP_CAPS)
        if self.kind == "query_template" and self.risk not in (None, RiskClass.READ):
            raise ValueError(ERR_TEMPLATE_RISK)
        return self


class McpServer(_Strict):
    url: str
    credential: str | None = Field(default=None, pattern=CREDENTIAL_NAME)


class Models(_Strict):
    small: str = Field(default="", max_length=100)
    large: str = Field(default="", max_length=100)


class Budgets(_Strict):
    max_tool_calls: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_seconds: int | None = Field(default=None, ge=1)
    max_cost_usd: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    loop_threshold: int | None = Field(default=None, ge=1)
    daily_budget_usd: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    cost_target_usd: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)


_Fraction = Field(default=None, ge=0, le=1, allow_inf_nan=False)


class Gate(_Strict):
    min_decisions: int | None = Field(default=None, ge=0)
    min_agreement: Decimal | None = _Fraction
    min_item_agreement: Decimal | None = _Fraction
    min_coverage: Decimal | None = _Fraction
    window_days: int | None = Field(default=None, ge=0)
    critical_lookback: int | None = Field(default=None, ge=0)
    counts_imported: bool | None = None
    min_supervised_decisions: int | None = Field(default=None, ge=0)
    agreement_floor: Decimal | None = _Fraction
    tool_error_budget: Decimal | None = _Fraction
    sample_rate: Decimal | None = _Fraction
    review_sla_minutes: int | None = Field(default=None, ge=0)
    trace_retention_days: int | None = Field(default=None, ge=0)


class Allowlists(_Strict):
    groups: list[str] | None = None
    email_domains: list[str] | None = None


class Policy(_Strict):
    """The workflow's policy rules (``agents.policy``) beyond what each tool carries."""

    always_approve: list[str] | None = None
    checks: list[str] = Field(default_factory=list)
    allowlists: Allowlists = Field(default_factory=Allowlists)
    caps: dict[str, Limits] = Field(default_factory=dict)
    two_approvers: dict[str, Any] | None = None


class Access(_Strict):
    """Who reviews and who manages the workflow, by group."""

    reviewers: list[str] = Field(default_factory=list)
    managers: list[str] = Field(default_factory=list)


class WorkflowSpec(_Strict):
    version: Literal[1] = SPEC_VERSION
    slug: str = Field(pattern=SLUG)
    name: str = Field(min_length=1, max_length=200)
    owner: str | None = None
    instructions: str = ""
    level: str | None = None
    models: Models = Field(default_factory=Models)
    budgets: Budgets = Field(default_factory=Budgets)
    gate: Gate = Field(default_factory=Gate)
    trusted_fields: list[str] = Field(default_factory=list)
    policy: Policy = Field(default_factory=Policy)
    access: Access = Field(default_factory=Access)
    credentials: dict[str, CredentialRef] = Field(default_factory=dict)
    mcp_servers: dict[str, McpServer] = Field(default_factory=dict)
    tools: list[ToolSpec] = Field(default_factory=list)

    _check_level = field_validator("level")(_no_level_above_shadow)

    @field_validator("credentials", mode="before")
    @classmethod
    def _no_inline_secrets(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for ref in value.values():
                if not isinstance(ref, dict):
                    raise ValueError(ERR_INLINE_SECRET)
        return value

    @field_validator("credentials")
    @classmethod
    def _credential_names(cls, value: dict[str, CredentialRef]) -> dict[str, CredentialRef]:
        for name in value:
            if not re.match(CREDENTIAL_NAME, name):
                raise ValueError(f"credential name {name!r} must be a slug")
        return value

    @model_validator(mode="after")
    def _references_resolve(self) -> WorkflowSpec:
        seen: set[str] = set()
        for tool in self.tools:
            if tool.name in seen:
                raise ValueError(ERR_DUPLICATE_TOOL.format(name=tool.name))
            seen.add(tool.name)
            if tool.credential and tool.credential not in self.credentials:
                raise ValueError(ERR_UNKNOWN_CREDENTIAL.format(name=tool.credential))
            if tool.server and tool.server not in self.mcp_servers:
                raise ValueError(ERR_UNKNOWN_SERVER.format(name=tool.server))
        for server in self.mcp_servers.values():
            if server.credential and server.credential not in self.credentials:
                raise ValueError(ERR_UNKNOWN_CREDENTIAL.format(name=server.credential))
        return self


def _location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def errors_text(error: ValidationError) -> str:
    """One line per problem, each with the path of the field it is in."""
    lines = []
    for item in error.errors():
        loc = tuple(part for part in item["loc"] if not str(part).startswith("function-"))
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"  {_location(loc)}: {message}")
    return "\n".join(lines)


def spec_parse(text: str, *, source: str = "spec", base_dir: Path | None = None) -> WorkflowSpec:
    """Parse and validate a spec's YAML text. ``schema_file`` paths are read relative
    to ``base_dir`` and inlined as the tool's parameters."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SPEC_BYTES:
        raise SpecError(ERR_TOO_LARGE.format(source=source, limit=MAX_SPEC_BYTES))
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError(ERR_YAML.format(source=source, error=error)) from None
    if not isinstance(data, dict):
        raise SpecError(ERR_NOT_MAPPING.format(source=source))
    # A NUL character, a lone surrogate or a non-finite number no column can hold.
    problem = hygiene.first_problem(data)
    if problem is not None:
        where = problem.where.removeprefix("$.").removeprefix("$")
        raise SpecError(ERR_UNSTORABLE.format(source=source, where=where, problem=problem.message))
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(ERR_INVALID.format(source=source, errors=errors_text(error))) from None
    for index, tool in enumerate(spec.tools):
        if tool.schema_file is not None:
            where = f"tools[{index}].schema_file"
            description, tool.parameters = _schema_from_file(tool, base_dir, where, source)
            tool.description = tool.description or description
            tool.schema_file = None
    return spec


def _schema_from_file(
    tool: ToolSpec, base_dir: Path | None, where: str, source: str
) -> tuple[str, dict[str, Any]]:
    """The parameters of the function named like the tool, from a JSON or YAML file of
    OpenAI function definitions (one, or a list)."""
    from agents.schema_tools import SchemaToolError, definition_from_openai

    path = Path(tool.schema_file or "")
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise SpecError(ERR_SCHEMA_FILE.format(source=source, where=where, problem=error)) from None
    entries = loaded if isinstance(loaded, list) else [loaded]
    for entry in entries:
        try:
            name, description, parameters = definition_from_openai(entry)
        except SchemaToolError:
            continue
        if name == tool.name:
            return description, parameters
    problem = f"{path} has no function called {tool.name!r}"
    raise SpecError(ERR_SCHEMA_FILE.format(source=source, where=where, problem=problem))


def spec_load(path: str | Path) -> WorkflowSpec:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise SpecError(f"{path}: {error.strerror or error}") from None
    return spec_parse(text, source=str(path), base_dir=path.parent)

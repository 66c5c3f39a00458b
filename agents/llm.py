"""Model clients: any OpenAI-compatible endpoint, or the built-in demo model.

Both sit behind ``ModelClient.complete``. ``model_complete`` adds the request
cache (Django cache, Redis in production); what a call costs is ``agents.prices``.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings
from django.core.cache import cache
from django.utils.module_loading import import_string

from agents.tools.base import canonical_json

if TYPE_CHECKING:
    from governance.models import Workflow

DEMO_SMALL = "demo-small"
DEMO_LARGE = "demo-large"
CACHE_PREFIX = "tenure:llm:v1:"
CACHE_SECONDS = 60 * 60
LOW_CONFIDENCE = 0.6
ERR_MODEL = "The model endpoint failed: {error}"

_REFUSAL = re.compile(
    r"^\s*(i'?m sorry|i am sorry|i can(no|')t (help|assist|comply)|i (won'?t|will not) )",
    re.IGNORECASE,
)


class ModelError(Exception):
    pass


@dataclass
class ModelToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it (possibly invalid)


@dataclass
class ModelResponse:
    model: str
    content: str = ""
    tool_calls: list[ModelToolCall] = field(default_factory=list)
    tokens_in: int = 0  # every input token, the cached ones included
    tokens_out: int = 0
    refusal: str = ""
    # Input tokens the endpoint served from its own prompt cache (priced lower).
    tokens_cached: int = 0
    cached: bool = False
    latency_ms: int = 0
    # Why the model stopped, as the endpoint said ("stop", "tool_calls", "length", ...).
    finish_reason: str = ""

    @property
    def refused(self) -> bool:
        return bool(self.refusal) or (not self.tool_calls and bool(_REFUSAL.match(self.content)))

    def to_cache(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_cache(cls, data: dict[str, Any]) -> ModelResponse:
        calls = [ModelToolCall(**c) for c in data.pop("tool_calls", [])]
        return cls(**data, tool_calls=calls)


class ModelClient(Protocol):
    def complete(
        self, *, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> ModelResponse: ...


class OpenAIClient:
    """Any OpenAI-compatible chat-completions endpoint (OpenAI, Azure, vLLM, Ollama)."""

    def __init__(self, *, base_url: str = "", api_key: str = "", timeout: float = 30.0) -> None:
        import openai

        self._openai = openai
        self.client = openai.OpenAI(
            api_key=api_key or "not-needed",
            base_url=base_url or None,
            timeout=timeout,
            max_retries=1,
        )

    def complete(
        self, *, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> ModelResponse:
        try:
            response = self.client.chat.completions.create(
                model=model,
                messages=messages,
                tools=tools or self._openai.NOT_GIVEN,
                temperature=0,
            )
        except self._openai.OpenAIError as exc:
            raise ModelError(ERR_MODEL.format(error=type(exc).__name__)) from exc
        if not response.choices:
            raise ModelError(ERR_MODEL.format(error="no choices"))
        message = response.choices[0].message
        calls = [
            ModelToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments)
            for call in (message.tool_calls or [])
            if getattr(call, "function", None) is not None
        ]
        usage = response.usage
        details = getattr(usage, "prompt_tokens_details", None) if usage else None
        return ModelResponse(
            model=response.model or model,
            content=message.content or "",
            tool_calls=calls,
            tokens_in=usage.prompt_tokens if usage else 0,
            tokens_out=usage.completion_tokens if usage else 0,
            tokens_cached=(getattr(details, "cached_tokens", None) or 0) if details else 0,
            refusal=getattr(message, "refusal", None) or "",
            finish_reason=str(response.choices[0].finish_reason or ""),
        )


@lru_cache(maxsize=8)
def _openai_client(base_url: str, api_key: str) -> OpenAIClient:
    return OpenAIClient(base_url=base_url, api_key=api_key)


def uses_demo_model() -> bool:
    return not (settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL)


def models_for(workflow: Workflow) -> tuple[str, str]:
    """(small, large). With no endpoint configured, the demo models, labelled as such."""
    small = workflow.model_small or ("" if uses_demo_model() else settings.TENURE_MODEL_SMALL)
    large = workflow.model_large or ("" if uses_demo_model() else settings.TENURE_MODEL_LARGE)
    return small or DEMO_SMALL, large or DEMO_LARGE


def is_demo_model(model: str) -> bool:
    return model.startswith("demo-")


ERR_NO_DEMO_CLIENT = (
    "{model} is the built-in demo model, and no demo model client is configured "
    "(TENURE_DEMO_MODEL_CLIENT)."
)


@lru_cache(maxsize=4)
def _demo_client_class(path: str) -> type:
    return import_string(path)


def client_for(model: str) -> ModelClient:
    """The client for ``model``: the demo model's (named in settings) for demo-* names,
    otherwise the OpenAI-compatible endpoint."""
    if is_demo_model(model):
        path = getattr(settings, "TENURE_DEMO_MODEL_CLIENT", "")
        if not path:
            raise ModelError(ERR_NO_DEMO_CLIENT.format(model=model))
        return _demo_client_class(path)()
    return _openai_client(settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY)


def request_key(model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
    digest = hashlib.sha256(canonical_json([model, messages, tools]).encode()).hexdigest()
    return CACHE_PREFIX + digest


def model_complete(
    *,
    model: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    client: ModelClient | None = None,
    use_cache: bool = True,
) -> ModelResponse:
    """One model call through the request cache. A hit costs nothing and says so."""
    key = request_key(model, messages, tools)
    if use_cache:
        hit = cache.get(key)
        if hit is not None:
            response = ModelResponse.from_cache(dict(hit))
            response.cached, response.latency_ms = True, 0
            return response
    started = time.monotonic()
    response = (client or client_for(model)).complete(model=model, messages=messages, tools=tools)
    response.latency_ms = int((time.monotonic() - started) * 1000)
    if use_cache and not response.refused:
        cache.set(key, response.to_cache(), CACHE_SECONDS)
    return response


_HARD_WORDS = re.compile(r"\b(legal|lawyer|chargeback|fraud|gdpr|lawsuit|escalate)\b", re.I)
_IDENTIFIERS = re.compile(r"\b[A-Z]-\d{3,8}\b")


def route_is_hard(text: str) -> bool:
    """A cheap router: long items, several records at once, or legal/fraud words
    go straight to the large model."""
    return (
        len(text) > 1200
        or len(set(_IDENTIFIERS.findall(text))) > 1
        or bool(_HARD_WORDS.search(text))
    )

"""Search over a workflow's knowledge documents (policies, runbooks, FAQ).

On PostgreSQL this is full-text search: a weighted vector (title A, body B),
a ``websearch`` query (quotes, ``or`` and ``-`` work as people expect), ranked
by ``ts_rank`` with a highlighted snippet. When every word must match and
nothing does, it falls back to any-word matching, since the agent asks in
sentences rather than keywords. On SQLite (the embedded default) a simple
``icontains`` score keeps the demo working.

Results are cached in the Django cache. The key holds the workflow, the
normalised query, the limit and the documents' version (latest ``updated_at``
and count), so editing, adding or deleting a document misses the cache
without any explicit invalidation.

The vector expression is ``search_vector()``; a GIN index on the same
expression lets PostgreSQL use it (see the module's index note in the report).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from django.contrib.postgres.search import (
    SearchHeadline,
    SearchQuery,
    SearchRank,
    SearchVector,
)
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, F, Max, Q

from agents.models import KnowledgeDocument

SEARCH_CONFIG = "english"
CACHE_SECONDS = 300
CACHE_PREFIX = "knowledge:v1"
MAX_LIMIT = 20
MAX_QUERY_CHARS = 500
MAX_TERMS = 12
SNIPPET_CHARS = 240
# Plain-text markers (not HTML): snippets are shown escaped.
HIGHLIGHT_START = "«"
HIGHLIGHT_STOP = "»"

ERR_LIMIT = "limit must be between 1 and {maximum}."

_WORD_RE = re.compile(r"\w+", re.UNICODE)
_SPACE_RE = re.compile(r"\s+")
# Words too common to rank on in the SQLite fallback.
# fmt: off
_STOP_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "for", "from", "how", "i",
    "if", "in", "is", "it", "my", "of", "on", "or", "our", "so", "the", "this", "to", "we",
    "what", "when", "where", "which", "who", "why", "will", "with", "you", "your",
})
# fmt: on


def search_vector() -> SearchVector:
    """The document vector. A GIN index must use exactly this expression."""
    return SearchVector("title", weight="A", config=SEARCH_CONFIG) + SearchVector(
        "body", weight="B", config=SEARCH_CONFIG
    )


def normalize_query(query: str) -> str:
    return _SPACE_RE.sub(" ", query or "").strip().lower()[:MAX_QUERY_CHARS]


def _terms(normalized: str) -> list[str]:
    terms: list[str] = []
    for word in _WORD_RE.findall(normalized):
        if len(word) > 1 and word not in _STOP_WORDS and word not in terms:
            terms.append(word)
    return terms[:MAX_TERMS]


def _workflow_id(workflow: Any) -> int:
    return int(getattr(workflow, "pk", workflow))


def _documents_version(workflow_id: int) -> str:
    stats = KnowledgeDocument.objects.filter(workflow_id=workflow_id).aggregate(
        latest=Max("updated_at"), count=Count("id")
    )
    latest = stats["latest"].isoformat() if stats["latest"] else "-"
    return f"{latest}:{stats['count']}"


def _cache_key(workflow_id: int, normalized: str, limit: int, version: str) -> str:
    digest = hashlib.sha256(f"{normalized}\x00{limit}\x00{version}".encode()).hexdigest()[:40]
    return f"{CACHE_PREFIX}:{workflow_id}:{digest}"


def _postgres_search(workflow_id: int, normalized: str, limit: int) -> list[dict[str, Any]]:
    documents = KnowledgeDocument.objects.filter(workflow_id=workflow_id).annotate(
        document=search_vector()
    )
    queries = [SearchQuery(normalized, search_type="websearch", config=SEARCH_CONFIG)]
    terms = _terms(normalized)
    if len(terms) > 1:
        any_word = SearchQuery(terms[0], search_type="plain", config=SEARCH_CONFIG)
        for term in terms[1:]:
            any_word |= SearchQuery(term, search_type="plain", config=SEARCH_CONFIG)
        queries.append(any_word)
    for query in queries:
        rows = list(
            documents.filter(document=query)
            .annotate(
                rank=SearchRank(F("document"), query),
                snippet=SearchHeadline(
                    "body",
                    query,
                    config=SEARCH_CONFIG,
                    start_sel=HIGHLIGHT_START,
                    stop_sel=HIGHLIGHT_STOP,
                    max_words=35,
                    min_words=12,
                    max_fragments=2,
                    fragment_delimiter=" … ",
                ),
            )
            .order_by("-rank", "title", "pk")
            .values("slug", "title", "snippet", "rank")[:limit]
        )
        if rows:
            return [{**row, "rank": round(float(row["rank"]), 6)} for row in rows]
    return []


def _snippet(body: str, terms: list[str]) -> str:
    lowered = body.lower()
    positions = [found for term in terms if (found := lowered.find(term)) >= 0]
    start = max(min(positions) - SNIPPET_CHARS // 3, 0) if positions else 0
    text = body[start : start + SNIPPET_CHARS].strip()
    prefix = "… " if start > 0 else ""
    suffix = " …" if start + SNIPPET_CHARS < len(body) else ""
    return f"{prefix}{text}{suffix}"


def _fallback_search(workflow_id: int, normalized: str, limit: int) -> list[dict[str, Any]]:
    """Any-word ``icontains`` matching; a title hit counts three times a body hit."""
    terms = _terms(normalized) or ([normalized] if normalized else [])
    if not terms:
        return []
    matches = Q()
    for term in terms:
        matches |= Q(title__icontains=term) | Q(body__icontains=term)
    scored = []
    candidates = (
        KnowledgeDocument.objects.filter(matches, workflow_id=workflow_id)
        .order_by()
        .values_list("slug", "title", "body")
    )
    for slug, title, body in candidates:
        title_lower, body_lower = title.lower(), body.lower()
        score = sum(3 * title_lower.count(term) + body_lower.count(term) for term in terms)
        matched = sum(1 for term in terms if term in title_lower or term in body_lower)
        rank = round(matched / len(terms) * (1 + score / (1 + score)) / 2, 6)
        scored.append(
            {"slug": slug, "title": title, "snippet": _snippet(body, terms), "rank": rank}
        )
    scored.sort(key=lambda row: (-row["rank"], row["title"]))
    return scored[:limit]


def knowledge_search_cached(
    *, workflow: Any, query: str, limit: int = 5
) -> tuple[list[dict[str, Any]], bool]:
    """``knowledge_search`` plus whether the answer came from the cache (for
    the run's hit and miss counts)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(ERR_LIMIT.format(maximum=MAX_LIMIT))
    normalized = normalize_query(query)
    if not normalized:
        return [], False
    workflow_id = _workflow_id(workflow)
    key = _cache_key(workflow_id, normalized, limit, _documents_version(workflow_id))
    cached = cache.get(key)
    if cached is not None:
        return [dict(row) for row in cached], True
    if connection.vendor == "postgresql":
        results = _postgres_search(workflow_id, normalized, limit)
    else:
        results = _fallback_search(workflow_id, normalized, limit)
    cache.set(key, results, CACHE_SECONDS)
    return results, False


def knowledge_search(*, workflow: Any, query: str, limit: int = 5) -> list[dict[str, Any]]:
    """The workflow's documents that best answer ``query``, best first, as
    ``{"slug", "title", "snippet", "rank"}`` dicts. ``workflow`` is a Workflow
    or its primary key."""
    return knowledge_search_cached(workflow=workflow, query=query, limit=limit)[0]

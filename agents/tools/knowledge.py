"""The knowledge read tool: the workflow's policies, runbooks and FAQ."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from agents.models import RiskClass
from agents.tools.base import Tool, ToolContext


class SearchKnowledgeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: Annotated[str, Field(min_length=2, max_length=300)]
    limit: Annotated[int, Field(ge=1, le=10)] = 5


def search_knowledge(ctx: ToolContext, args: SearchKnowledgeArgs) -> dict[str, Any]:
    # Imported here: A2 owns the module (full-text search, cached there).
    from agents.knowledge import knowledge_search

    results = knowledge_search(workflow=ctx.workflow, query=args.query, limit=args.limit)
    return {"results": results}


TOOLS = [
    Tool(
        name="search_knowledge",
        description="Search this workflow's policies, runbooks and FAQ. Cite the slugs you use.",
        args_model=SearchKnowledgeArgs,
        risk_class=RiskClass.READ,
        handler=search_knowledge,
        cacheable=True,
        cache_seconds=120,
    ),
]

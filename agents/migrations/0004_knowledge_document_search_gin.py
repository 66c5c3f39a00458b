"""A GIN index for the knowledge documents' full-text search (agents.knowledge).

The indexed expression is exactly ``agents.knowledge.search_vector()`` as Django
compiles it (title weight A, body weight B, the ``english`` configuration), so the
planner can use it for ``document @@ query``. PostgreSQL only: the embedded SQLite
default searches with ``icontains`` and has no GIN. The index is not in the model's
state (no ``Meta.indexes``), so SQLite never sees it, even when it remakes the table.
"""

from __future__ import annotations

from django.db import migrations

INDEX = "agents_knowledgedoc_search_gin"
TABLE = "agents_knowledgedocument"
CREATE = f"""
CREATE INDEX IF NOT EXISTS {INDEX} ON {TABLE} USING gin ((
    setweight(to_tsvector('english'::regconfig, COALESCE(title, '')), 'A')
    || setweight(to_tsvector('english'::regconfig, COALESCE(body, '')), 'B')
))
"""
DROP = f"DROP INDEX IF EXISTS {INDEX}"


def create_index(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop_index(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("agents", "0003_run_stop_reason_budget_daily")]

    operations = [migrations.RunPython(create_index, drop_index, elidable=False)]

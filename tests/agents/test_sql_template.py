from __future__ import annotations

import time
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from agents.connectors.sql_template import (
    ERR_DATABASE,
    ERR_MISSING_PARAMS,
    ERR_MULTIPLE,
    ERR_NOT_SELECT,
    ERR_POSITIONAL,
    ERR_READ_ONLY,
    QueryTemplate,
    SqlTemplateError,
    query_template_run,
    run_query_template,
    templates_for,
    validate_sql,
)
from demo.models import DirectoryGroup, SandboxOrder
from tests.factories import WorkflowFactory

ORDER_BY_NUMBER = "SELECT number, status, total FROM agents_sandboxorder WHERE number = %(number)s"
ORDERS_OVER = (
    "SELECT number, total, placed_at FROM agents_sandboxorder "
    "WHERE total >= %(minimum)s ORDER BY number"
)


@pytest.fixture
def orders(transactional_db):
    now = timezone.now()
    return [
        SandboxOrder.objects.create(
            number=f"A-100{n}",
            customer_name=f"Customer {n}",
            customer_email=f"c{n}@example.com",
            total=Decimal(f"{n}0.00"),
            placed_at=now,
        )
        for n in range(1, 6)
    ]


@pytest.fixture
def shop(db):
    # Only the policy matters; the queries run on their own connection.
    return WorkflowFactory(
        slug="shop",
        policy={
            "query_templates": {
                "order_by_number": {"sql": ORDER_BY_NUMBER, "params": ["number"]},
                "orders_over": {"sql": ORDERS_OVER, "max_rows": 3},
                "slow": {"sql": "SELECT pg_sleep(%(seconds)s)", "timeout_ms": 200},
            }
        },
    )


def test_a_template_returns_columns_and_rows(shop, orders):
    result = query_template_run(workflow=shop, name="order_by_number", params={"number": "A-1002"})

    assert result == {
        "columns": ["number", "status", "total"],
        "rows": [["A-1002", "delivered", "20.00"]],
        "truncated": False,
    }


def test_the_row_limit_is_enforced_and_truncation_reported(shop, orders):
    result = query_template_run(workflow=shop, name="orders_over", params={"minimum": 0})
    assert [row[0] for row in result["rows"]] == ["A-1001", "A-1002", "A-1003"]
    assert result["truncated"] is True
    # Dates come back as JSON-safe text.
    assert isinstance(result["rows"][0][2], str)

    smaller = query_template_run(workflow=shop, name="orders_over", params={"minimum": 0}, limit=2)
    assert len(smaller["rows"]) == 2
    assert smaller["truncated"]

    exact = query_template_run(workflow=shop, name="orders_over", params={"minimum": 30})
    assert len(exact["rows"]) == 3
    assert not exact["truncated"]

    with pytest.raises(SqlTemplateError, match="limit must be between 1 and 3"):
        query_template_run(workflow=shop, name="orders_over", params={"minimum": 0}, limit=50)


def test_parameters_are_bound_so_an_injection_attempt_finds_nothing(shop, orders):
    for hostile in (
        "A-1001' OR '1'='1",
        "A-1001'; DELETE FROM agents_sandboxorder; --",
        "' UNION SELECT username, password, 0 FROM auth_user --",
        "%(number)s",
    ):
        result = query_template_run(
            workflow=shop, name="order_by_number", params={"number": hostile}
        )
        assert result["rows"] == [], hostile
    assert SandboxOrder.objects.count() == 5


def test_a_template_that_inserts_is_refused():
    with pytest.raises(SqlTemplateError, match="must be a single SELECT or WITH"):
        validate_sql("INSERT INTO agents_directorygroup (name) VALUES (%(name)s)")


def test_a_select_that_writes_through_a_cte_is_refused():
    sql = (
        "WITH made AS (INSERT INTO agents_directorygroup (name, description, privileged) "
        "VALUES ('admins', '', true) RETURNING id) SELECT id FROM made"
    )
    with pytest.raises(SqlTemplateError, match="'INSERT' is not allowed"):
        validate_sql(sql)


def test_a_select_calling_a_writing_function_is_stopped_by_the_read_only_transaction(orders):
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE OR REPLACE FUNCTION tenure_test_sneaky_write() RETURNS integer "
            "LANGUAGE sql AS $$ INSERT INTO agents_directorygroup (name, description, privileged) "
            "VALUES ('sneaky', '', true) RETURNING 1 $$"
        )
    try:
        # The words check cannot see inside the function: the transaction mode can.
        template = QueryTemplate.from_config(
            "sneaky", {"sql": "SELECT tenure_test_sneaky_write() AS written"}
        )
        with pytest.raises(SqlTemplateError) as caught:
            run_query_template(template)
        assert str(caught.value) == ERR_READ_ONLY
        assert not DirectoryGroup.objects.filter(name="sneaky").exists()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP FUNCTION IF EXISTS tenure_test_sneaky_write()")


def test_a_sequence_bump_is_refused_by_the_read_only_transaction(db):
    template = QueryTemplate.from_config(
        "bump", {"sql": "SELECT nextval(pg_get_serial_sequence('agents_sandboxorder', 'id'))"}
    )
    with pytest.raises(SqlTemplateError, match="read-only"):
        run_query_template(template)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT 1; DELETE FROM agents_sandboxorder", ERR_MULTIPLE),
        ("DELETE FROM agents_sandboxorder", ERR_NOT_SELECT),
        ("EXPLAIN ANALYZE DELETE FROM agents_sandboxorder", ERR_NOT_SELECT),
        ("  -- a comment first\n UPDATE agents_sandboxorder SET status = 'x'", ERR_NOT_SELECT),
        ("SELECT * INTO stolen FROM agents_sandboxorder", "'INTO' is not allowed"),
        ("SELECT * FROM agents_sandboxorder FOR UPDATE", "'UPDATE' is not allowed"),
        ("SELECT * FROM agents_sandboxorder FOR SHARE", "'FOR SHARE' is not allowed"),
        ("SELECT set_config('statement_timeout', '0', true)", "may not call 'set_config'"),
        ("SELECT dblink_exec('host=x', 'DROP TABLE y')", "may not call 'dblink_exec'"),
        ("SELECT * FROM agents_sandboxorder WHERE id = %s", ERR_POSITIONAL),
        ("SELECT * FROM agents_sandboxorder WHERE number LIKE 'A%'", ERR_POSITIONAL),
        ("SELECT 'unterminated", "unterminated quoted text"),
        ("", "no SQL"),
    ],
)
def test_templates_that_are_not_a_single_read_are_refused(sql, message):
    with pytest.raises(SqlTemplateError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_sql(sql)


def test_forbidden_words_inside_literals_and_comments_are_only_text():
    sql = (
        'SELECT \'delete; drop\' AS note, "update" FROM (SELECT 1 AS "update") t '
        "/* insert into x; */ WHERE $$;set$$ <> '' -- update\n;"
    )
    assert validate_sql(sql) == sql[: sql.rfind(";")].rstrip()
    assert validate_sql("SELECT number FROM t WHERE number LIKE 'A%%'")


def test_the_statement_timeout_cancels_a_slow_query(shop):
    start = time.monotonic()
    with pytest.raises(SqlTemplateError, match="longer than 200 ms"):
        query_template_run(workflow=shop, name="slow", params={"seconds": 5})
    assert time.monotonic() - start < 3


def test_the_read_only_transaction_does_not_leak_into_the_callers(shop):
    with transaction.atomic():
        query_template_run(workflow=shop, name="order_by_number", params={"number": "A-1001"})
        DirectoryGroup.objects.create(name="after-a-query")
    assert DirectoryGroup.objects.filter(name="after-a-query").exists()


def test_parameters_must_match_the_template(shop):
    with pytest.raises(SqlTemplateError, match=ERR_MISSING_PARAMS.format(names="number")):
        query_template_run(workflow=shop, name="order_by_number", params={})
    with pytest.raises(SqlTemplateError, match="Unknown parameters: limit"):
        query_template_run(
            workflow=shop, name="order_by_number", params={"number": "A-1001", "limit": 5}
        )
    with pytest.raises(SqlTemplateError, match="must be a string, number"):
        query_template_run(workflow=shop, name="order_by_number", params={"number": {"$ne": 1}})
    with pytest.raises(SqlTemplateError, match="No query template named 'drop_all'"):
        query_template_run(workflow=shop, name="drop_all", params={})


def test_declared_params_must_match_the_sql():
    with pytest.raises(SqlTemplateError, match="do not match"):
        QueryTemplate.from_config("x", {"sql": ORDER_BY_NUMBER, "params": ["id"]})


def test_only_allowed_database_aliases_are_used():
    with pytest.raises(SqlTemplateError, match=ERR_DATABASE.format(alias="warehouse")):
        QueryTemplate.from_config("x", {"sql": "SELECT 1", "database": "warehouse"})


def test_every_configured_template_is_checked(db):
    workflow = WorkflowFactory(
        slug="bad-templates", policy={"query_templates": {"oops": {"sql": "DROP TABLE x"}}}
    )
    with pytest.raises(SqlTemplateError, match="SELECT or WITH"):
        templates_for(workflow)

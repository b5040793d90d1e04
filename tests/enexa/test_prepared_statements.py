"""The hot path's statements are prepared once per connection on PostgreSQL (psycopg ignores
`prepare=True` while the connection's prepare_threshold is None, Django's default)."""

import pytest
from django.db import connection

from enexa.core.sql import run_prepared

pytestmark = pytest.mark.django_db


def test_a_statement_run_twice_is_planned_once_per_connection():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no server-side prepared statements")
    statement = "SELECT %s::int + 1"
    assert run_prepared(statement, [1], fetch=True) == [(2,)]
    assert run_prepared(statement, [41], fetch=True) == [(42,)]
    prepared = run_prepared(
        "SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements "
        "WHERE statement LIKE %s",
        ["SELECT $1::int + 1%"],
        fetch=True,
    )
    assert len(prepared) == 1 and prepared[0][1] == 2


def test_djangos_own_queries_are_not_prepared():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no server-side prepared statements")
    with connection.cursor() as cursor:
        for _ in range(3):
            cursor.execute("SELECT 7 * %s", [6])
    prepared = run_prepared(
        "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
        ["SELECT 7 *%"],
        fetch=True,
    )
    assert prepared == [(0,)]

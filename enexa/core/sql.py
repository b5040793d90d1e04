"""Hand-written statements for the hot path, prepared once per connection on PostgreSQL.

Django's psycopg cursor binds parameters on the client, so PostgreSQL parses and plans every
statement anew; on the ingest path that planning cost more than the work. A statement run here
goes through a server-side-binding psycopg cursor with `prepare=True` on PostgreSQL, and
through Django's cursor elsewhere (SQLite). psycopg prepares only on a connection whose
`prepare_threshold` is set: the settings set it (ENEXA_DB_PREPARED_STATEMENTS)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from django.db import connection


def run_prepared(sql: str, params: Sequence[Any], *, fetch: bool = False) -> list[tuple[Any, ...]]:
    """Execute `sql` (with %s placeholders) and return its rows when `fetch`."""
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params, prepare=True)
            return cursor.fetchall() if fetch else []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if fetch else []

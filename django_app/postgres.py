"""PostgreSQL-only helpers for the hot paths (the backend's own driver, psycopg 3)."""

from __future__ import annotations

from typing import Any


def server_bound_cursor(connection: Any) -> Any:
    """A psycopg cursor binding parameters server-side (Django's binds client-side), wrapped
    like Django's own cursors (query logging, execute wrappers, error translation).

    A list then goes to PostgreSQL as one array parameter rather than as escaped text.
    Pass lists as ``%b`` (binary): the text form of an array is built by psycopg in
    Python, about four times slower for a thousand ids.
    """
    import psycopg

    connection.ensure_connection()
    cursor = psycopg.Cursor(connection.connection)
    if connection.queries_logged:
        return connection.make_debug_cursor(cursor)
    return connection.make_cursor(cursor)


def sends_many_statements(cursor: Any) -> bool:
    """Whether ``cursor`` (a Django cursor) can send several statements in one string and
    step through their results: psycopg 3's client-side binding cursor, Django's default."""
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(getattr(cursor, "cursor", None), psycopg.ClientCursor)

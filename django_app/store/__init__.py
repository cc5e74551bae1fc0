"""The one way into the outbox and the ledger: ``get_store(using)``.

Every path (the save path, the backfill, delivery, the commands, the admin's counts) goes
through the store of its database alias. The portable store (``base``) speaks only the
ORM; a database that earns a fast path gets a subclass (``postgres``). The driver is
detected once per alias, and nothing imports a driver the host does not have.
"""

from __future__ import annotations

from django.db import connections, router

from django_app.models import OutboxEvent
from django_app.store.base import (
    Claimed,
    DuplicateMessageId,
    Lease,
    Ledger,
    OutboxStore,
    Recorded,
    chain_message_id,
    choose_events,
    event_name,
    ledger_key,
    subject_of,
)

_stores: dict[str, OutboxStore] = {}


def store_class(using: str) -> type[OutboxStore]:
    connection = connections[using]
    if connection.vendor != "postgresql":
        return OutboxStore
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    from django_app.store.postgres import PostgresStore, Psycopg3Store

    return Psycopg3Store if is_psycopg3 else PostgresStore


def get_store(using: str | None = None) -> OutboxStore:
    """The store of database alias ``using`` (default: where the router writes the outbox)."""
    using = using or router.db_for_write(OutboxEvent)
    store = _stores.get(using)
    if store is None:
        store = _stores[using] = store_class(using)(using)
    return store


def reset_stores() -> None:
    """Forget the stores built so far (after DATABASES changed, in tests)."""
    _stores.clear()


__all__ = [
    "Claimed",
    "DuplicateMessageId",
    "Lease",
    "Ledger",
    "OutboxStore",
    "Recorded",
    "chain_message_id",
    "choose_events",
    "event_name",
    "get_store",
    "ledger_key",
    "reset_stores",
    "subject_of",
]

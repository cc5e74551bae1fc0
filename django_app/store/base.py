"""The outbox store on the ORM: every database Django supports, and the reference for the
fast paths in ``django_app.store.postgres`` (which override a method only where a database
earns it, and must behave the same; the suite runs every path on every database).

What the store keeps: the outbox (events waiting for, or done with, delivery) and the
ledger (what was last recorded per event kind and subject, so each change of content is
recorded once). Table and column names come from the models' ``_meta``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import F, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from django_app.models import LedgerEntry, OutboxEvent, Status
from tracking_adapter import EVENT_NAME, EnrichedEvent, event_type

INVALID_PREFIX = "invalid-"  # message ids of dead rows that hold no event, only its problems
COPY_THRESHOLD = 50  # below this many rows, the plain statements are as quick and simpler


@dataclass(slots=True)
class Claimed:
    """An outbox row in the hands of one sender: what sending and settling it needs."""

    pk: int
    message_id: str
    user_id: str
    attempts: int
    claim_token: str
    payload: Any = None
    event: str = EVENT_NAME  # the kind, which tells how to read the payload back


@dataclass(frozen=True)
class Recorded:
    """What recording did: ``row`` is None when the content was already recorded."""

    event: EnrichedEvent
    row: Claimed | None

    @property
    def created(self) -> bool:
        return self.row is not None


@dataclass(frozen=True)
class Lease:
    """Rows recorded already claimed by their recorder (a backfill sending them itself)."""

    token: str
    until: datetime


class DuplicateMessageId(Exception):
    """A message id the caller chose is already in the outbox; nothing was written."""

    def __init__(self, message_id: str) -> None:
        super().__init__(f"message id {message_id!r} is already in the outbox")
        self.message_id = message_id


# LedgerEntry: (content_hash, message_id) per subject id, for one event kind.
Ledger = dict[str, tuple[str, str]]


def event_name(event: EnrichedEvent) -> str:
    return event.EVENT_NAME


def subject_of(event: EnrichedEvent) -> str:
    """The id the ledger keys an event on: the user of ``user_enriched``, the account of
    ``group_enriched`` (the event class says which)."""
    return event.subject_id


def ledger_key(event: EnrichedEvent) -> tuple[str, str]:
    """Where an event's ledger entry lives: a user and an account with the same id never
    share one."""
    return (event.EVENT_NAME, event.subject_id)


def chain_message_id(event: str, previous: str, message_id: str) -> str:
    """The id of a re-recording: derived from the subject's previous id and the event's own,
    so it is never an id already sent, and the same on every database (the PostgreSQL
    function computes it in SQL, byte for byte: see ``sql/record_event_v2.sql``).
    Shaped as an RFC 9562 name-based UUID, like the events' default ids."""
    name = f"{event}\x1f{previous}\x1f{message_id}".encode()
    digest = bytearray(hashlib.sha256(name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(digest)))


def _by_kind(
    events: Sequence[EnrichedEvent], hashes: Sequence[str]
) -> dict[str, list[tuple[str, str, str]]]:
    """Ledger entries ``(subject_id, content_hash, message_id)`` grouped by event kind."""
    kinds: dict[str, list[tuple[str, str, str]]] = {}
    for event, content_hash in zip(events, hashes, strict=True):
        kinds.setdefault(event.EVENT_NAME, []).append(
            (event.subject_id, content_hash, event.message_id)
        )
    return kinds


def outbox_values(
    event: EnrichedEvent, content_hash: str, now: datetime, lease: Lease | None
) -> dict[str, Any]:
    """Column values of one new outbox row, keyed by column (for raw inserts and COPY);
    tests/django/test_store_sql.py checks the keys against the model's columns."""
    return {
        "event": event_name(event),
        "message_id": event.message_id,
        "user_id": event.user_id,
        "group_id": event.group_id,
        "content_hash": content_hash,
        "payload": event.to_json().decode("utf-8"),
        "status": Status.PENDING.value,
        "attempts": 0,
        "next_attempt_at": lease.until if lease else now,
        "lease_expires_at": lease.until if lease else None,
        "claim_token": lease.token if lease else "",
        "sink": "",
        "last_error": "",
        "created_at": now,
        "updated_at": now,
        "delivered_at": None,
    }


def choose_events(
    events: list[EnrichedEvent],
    hashes: Sequence[str],
    ledger: Mapping[tuple[str, str], tuple[str, str]],
    *,
    force: bool = False,
    skip_empty: bool = False,
    keys: Sequence[tuple[str, str]] | None = None,
) -> list[int]:
    """Indexes of the events to record: content the ledger does not hold for the subject
    (the last event of a subject wins). A re-recorded subject's event gets a message id
    chained on the previous one, replaced in ``events``. The PostgreSQL function applies
    the same rule on the save path. ``keys``: each event's ``ledger_key``, if the caller
    has them."""
    if keys is None:
        keys = [ledger_key(event) for event in events]
    chosen: dict[tuple[str, str], int] = {}
    for index, (event, content_hash, subject) in enumerate(zip(events, hashes, keys, strict=True)):
        previous = ledger.get(subject)
        if previous is not None and previous[0] == content_hash and not force:
            continue
        if previous is None and skip_empty and event.properties.is_blank():
            continue
        if previous is not None and event.has_default_message_id:
            chained = chain_message_id(event_name(event), previous[1], event.message_id)
            events[index] = event.model_copy(update={"message_id": chained})
        chosen[subject] = index
    return sorted(chosen.values())


class OutboxStore:
    """The portable store: the ORM's statements only. One instance per database alias."""

    def __init__(self, using: str) -> None:
        self.using = using

    @property
    def connection(self) -> Any:
        return connections[self.using]

    def row_cursor(self) -> Any:
        """A cursor for reading many rows of the host's tables (a backfill's pages)."""
        return self.connection.cursor()

    def describe(self) -> str:
        return f"{type(self).__name__} on {self.using!r} ({self.connection.vendor})"

    def outbox(self) -> Any:
        return OutboxEvent.objects.using(self.using)

    def ledger(self, event: str = EVENT_NAME) -> Any:
        return LedgerEntry.objects.using(self.using).filter(event=event)

    # -- recording ---------------------------------------------------------------------

    def record_one(
        self, event: EnrichedEvent, *, force: bool = False, skip_empty: bool = False
    ) -> Recorded:
        """The save path: record ``event`` unless its content is what the ledger holds.
        May raise ``DatabaseError`` or ``DuplicateMessageId``; never leaves the caller's
        transaction unusable (what it writes, it writes in a savepoint)."""
        [recorded] = self.record_many([event], force=force, skip_empty=skip_empty)
        return recorded

    def record_many(
        self,
        events: Sequence[EnrichedEvent],
        *,
        force: bool = False,
        skip_empty: bool = False,
        lease: Lease | None = None,
    ) -> list[Recorded]:
        """Record a batch in one transaction: one ledger read, one insert, one ledger write.
        Returns one ``Recorded`` per event, in order."""
        events = list(events)
        hashes = [event.content_hash() for event in events]
        now = timezone.now()
        chosen_ids = {i for i, event in enumerate(events) if not event.has_default_message_id}
        taken: set[str] = set()
        while True:
            indexes: list[int] = []
            try:
                with transaction.atomic(using=self.using):
                    ledger = self.read_ledgers(events)
                    indexes = choose_events(
                        events, hashes, ledger, force=force, skip_empty=skip_empty
                    )
                    # A derived id already in the outbox is this very recording (same
                    # subject, content and time): nothing to send.
                    indexes = [i for i in indexes if events[i].message_id not in taken]
                    chosen = [events[i] for i in indexes]
                    chosen_hashes = [hashes[i] for i in indexes]
                    rows = self.insert_outbox(chosen, chosen_hashes, now, lease)
                    for kind, entries in _by_kind(chosen, chosen_hashes).items():
                        self.write_ledger(entries, now, event=kind)
                break
            except IntegrityError:
                # Only a message id already in the outbox is ours to sort out; rare enough
                # that the save path does not look it up before every insert.
                found = self._taken_message_ids([events[i].message_id for i in indexes])
                if not found - taken:
                    raise
                reused = [events[i].message_id for i in indexes if i in chosen_ids]
                if found & set(reused):
                    raise DuplicateMessageId(sorted(found & set(reused))[0]) from None
                taken |= found
        by_index = dict(zip(indexes, rows, strict=True))
        return [Recorded(event, by_index.get(index)) for index, event in enumerate(events)]

    def record_invalid(
        self,
        user_id: str,
        problems: list[list[str]],
        error: str,
        *,
        event: str = EVENT_NAME,
        group_id: str = "",
    ) -> OutboxEvent:
        """A dead row for data that could not become an event (its id says so: requeueing
        it would send nothing; the data must be fixed and saved again)."""
        return OutboxEvent.objects.using(self.using).create(
            event=event,
            message_id=f"{INVALID_PREFIX}{uuid.uuid4()}",
            user_id=user_id,
            group_id=group_id,
            payload={"problems": problems},
            status=Status.DEAD,
            last_error=error,
        )

    def _taken_message_ids(self, message_ids: list[str]) -> set[str]:
        if not message_ids:
            return set()
        return set(
            self.outbox().filter(message_id__in=message_ids).values_list("message_id", flat=True)
        )

    def insert_outbox(
        self,
        events: Sequence[EnrichedEvent],
        hashes: Sequence[str],
        now: datetime,
        lease: Lease | None,
    ) -> list[Claimed]:
        """New pending outbox rows (claimed under ``lease`` if given), in order."""
        if not events:
            return []
        pks = self._insert_rows(events, hashes, now, lease)
        claim_token = lease.token if lease else ""
        return [
            Claimed(pk, event.message_id, event.user_id, 0, claim_token, event=event.EVENT_NAME)
            for pk, event in zip(pks, events, strict=True)
        ]

    def _insert_rows(
        self,
        events: Sequence[EnrichedEvent],
        hashes: Sequence[str],
        now: datetime,
        lease: Lease | None,
    ) -> list[int]:
        extra: dict[str, Any] = (
            {
                "claim_token": lease.token,
                "next_attempt_at": lease.until,
                "lease_expires_at": lease.until,
            }
            if lease
            else {}
        )
        rows = [
            OutboxEvent(
                event=event_name(event),
                message_id=event.message_id,
                user_id=event.user_id,
                group_id=event.group_id,
                content_hash=content_hash,
                payload=event.model_dump(mode="json"),
                created_at=now,
                **extra,
            )
            for event, content_hash in zip(events, hashes, strict=True)
        ]
        created = self.outbox().bulk_create(rows)
        if all(row.pk is not None for row in created):
            return [row.pk for row in created]
        # MySQL/MariaDB return no ids from a bulk insert: read them back by message id.
        ids = dict(
            self.outbox()
            .filter(message_id__in=[row.message_id for row in rows])
            .values_list("message_id", "pk")
        )
        return [ids[row.message_id] for row in rows]

    # -- the ledger ---------------------------------------------------------------------

    def read_ledger(
        self, subject_ids: Iterable[str], *, event: str = EVENT_NAME, lock: bool = True
    ) -> Ledger:
        """``subject_id -> (content_hash, message_id)``; with ``lock``, locked until commit
        (so inside a transaction)."""
        entries = self.ledger(event).filter(subject_id__in=list(subject_ids))
        if lock:
            entries = entries.select_for_update()
        return {
            subject: (content_hash, message_id)
            for subject, content_hash, message_id in entries.values_list(
                "subject_id", "content_hash", "message_id"
            )
        }

    def read_ledgers(
        self, events: Sequence[EnrichedEvent], *, lock: bool = True
    ) -> dict[tuple[str, str], tuple[str, str]]:
        """The ledger entries of these events, of whatever kinds, keyed by ``ledger_key``."""
        subjects: dict[str, set[str]] = {}
        for event in events:
            subjects.setdefault(event.EVENT_NAME, set()).add(event.subject_id)
        return {
            (kind, subject): entry
            for kind, ids in subjects.items()
            for subject, entry in self.read_ledger(ids, event=kind, lock=lock).items()
        }

    def write_ledger(
        self,
        entries: Sequence[tuple[str, str, str]],
        now: datetime,
        *,
        event: str = EVENT_NAME,
        only_new: bool = False,
    ) -> None:
        """Upsert ``(subject_id, content_hash, message_id)`` entries; with ``only_new``,
        insert only the subjects the ledger does not hold (an entry written meanwhile wins)."""
        if not entries:
            return
        rows = [
            LedgerEntry(event=event, subject_id=s, content_hash=h, message_id=m, recorded_at=now)
            for s, h, m in entries
        ]
        manager = LedgerEntry.objects.using(self.using)
        if only_new:
            manager.bulk_create(rows, ignore_conflicts=True)
            return
        # MySQL/MariaDB upsert on whichever unique key conflicts and take no target.
        unique_fields = (
            ["event", "subject_id"]
            if self.connection.features.supports_update_conflicts_with_target
            else None
        )
        manager.bulk_create(
            rows,
            update_conflicts=True,
            update_fields=["content_hash", "message_id", "recorded_at"],
            unique_fields=unique_fields,
        )

    def write_ledger_if_unchanged(
        self,
        entries: Sequence[tuple[str, str, str, str | None]],
        now: datetime,
        *,
        event: str = EVENT_NAME,
    ) -> int:
        """Compare-and-set ``(subject_id, content_hash, message_id, expected_message_id)``
        entries: each is written only if the subject's entry still has the expected message
        id (None: still no entry). Returns how many were written.

        For a writer that read the ledger, then spent a while (a backfill sending a batch):
        a live save that recorded newer content meanwhile keeps its entry.
        """
        if not entries:
            return 0
        changed = sorted((s, h, m, e) for s, h, m, e in entries if e is not None)
        new = sorted((s, h, m) for s, h, m, e in entries if e is None)
        # No savepoint of its own: a caller's transaction (the backfill's) is enough. In key
        # order, like any other writer of many entries, so two never deadlock.
        with transaction.atomic(using=self.using, savepoint=False):
            written = self._update_if_unchanged(changed, now, event) if changed else 0
            if new:
                written += self._insert_if_absent(new, now, event)
        return written

    def _update_if_unchanged(
        self, entries: Sequence[tuple[str, str, str, str]], now: datetime, event: str
    ) -> int:
        """Write each entry whose subject's entry still has the expected message id (the
        entries locked first, until the caller's transaction ends); how many were written."""
        current = self.read_ledger({entry[0] for entry in entries}, event=event)
        updates = [
            (subject, content_hash, message_id)
            for subject, content_hash, message_id, expected in entries
            if (found := current.get(subject)) is not None and found[1] == expected
        ]
        self.write_ledger(updates, now, event=event)
        return len(updates)

    def _insert_if_absent(
        self, entries: Sequence[tuple[str, str, str]], now: datetime, event: str
    ) -> int:
        """Insert the entries of subjects the ledger does not hold; how many were inserted."""
        current = self.read_ledger({entry[0] for entry in entries}, event=event)
        inserts = [entry for entry in entries if entry[0] not in current]
        self.write_ledger(inserts, now, event=event, only_new=True)
        return len(inserts)

    # -- delivery -----------------------------------------------------------------------

    def claim(
        self,
        batch_size: int,
        lease_seconds: float,
        *,
        ids: Sequence[int] | None = None,
        due_by: datetime | None = None,
    ) -> list[Claimed]:
        """Lease up to ``batch_size`` rows pending and due by ``due_by`` (default: now),
        only among ``ids`` if given. With ``SKIP LOCKED`` (PostgreSQL, MariaDB 10.6+,
        MySQL 8) workers take disjoint batches without waiting on each other."""
        now = timezone.now()
        lease_until = now + timedelta(seconds=lease_seconds)
        token = uuid.uuid4().hex
        manager = self.outbox()
        due = manager.filter(status=Status.PENDING, next_attempt_at__lte=due_by or now)
        if ids is not None:
            due = due.filter(pk__in=list(ids))
        due = due.order_by("next_attempt_at", "id")
        lease = {
            "claim_token": token,
            "next_attempt_at": lease_until,
            "lease_expires_at": lease_until,
        }
        features = self.connection.features
        if features.has_select_for_update_skip_locked or self.connection.vendor != "sqlite":
            # Without SKIP LOCKED (MariaDB before 10.6) the lock waits for the other
            # worker's claim instead of skipping its rows; the ids are read first since
            # MariaDB refuses LIMIT in an IN subquery.
            skip = features.has_select_for_update_skip_locked
            with transaction.atomic(using=self.using):
                picked = list(
                    due.select_for_update(skip_locked=skip).values_list("pk", flat=True)[
                        :batch_size
                    ]
                )
                if not picked:
                    return []
                manager.filter(pk__in=picked).update(**lease)
            rows = manager.filter(pk__in=picked, claim_token=token)
        else:
            # SQLite runs one writer at a time: one UPDATE with a subquery is the claim.
            count = manager.filter(pk__in=due.values("pk")[:batch_size]).update(**lease)
            if not count:
                return []
            # next_attempt_at == lease_until finds the claimed rows through the due index.
            rows = manager.filter(
                status=Status.PENDING, next_attempt_at=lease_until, claim_token=token
            )
        values = rows.order_by("id").values_list(
            "pk",
            "message_id",
            "user_id",
            "attempts",
            "claim_token",
            Cast("payload", TextField()),
            "event",
        )
        return [Claimed(*row) for row in values]

    def extend_lease(self, ids: Sequence[int], token: str, until: datetime) -> int:
        """Move the lease of claimed rows still ours; returns how many were."""
        return int(
            self.outbox()
            .filter(pk__in=list(ids), claim_token=token, status=Status.PENDING)
            .update(next_attempt_at=until, lease_expires_at=until)
        )

    def mark_delivered(self, ids: list[int], token: str, now: datetime, sink_name: str) -> int:
        """One UPDATE for a delivered batch, only for rows still under ``token``."""
        return int(
            self.outbox()
            .filter(pk__in=ids, claim_token=token)
            .update(
                status=Status.DELIVERED,
                delivered_at=now,
                attempts=F("attempts") + 1,
                lease_expires_at=None,
                last_error="",
                sink=sink_name,
            )
        )

    def update_claimed(self, pk: int, token: str, changes: dict[str, Any]) -> int:
        """Write one claimed row's outcome, only while it is still under ``token``."""
        return int(self.outbox().filter(pk=pk, claim_token=token).update(**changes))

    def retry_now(self, rows: Any) -> int:
        """Make the pending rows among ``rows`` (a queryset) due now; returns how many."""
        return int(
            rows.filter(status=Status.PENDING).update(
                next_attempt_at=timezone.now(), lease_expires_at=None
            )
        )

    def requeue_dead(self, rows: Any) -> tuple[int, int]:
        """Turn the dead rows among ``rows`` back to pending with their attempts reset:
        (requeued, skipped). Rows that hold invalid data, not an event, stay dead."""
        dead = rows.filter(status=Status.DEAD)
        requeued = dead.exclude(message_id__startswith=INVALID_PREFIX).update(
            status=Status.PENDING, attempts=0, next_attempt_at=timezone.now(), lease_expires_at=None
        )
        return int(requeued), int(dead.filter(message_id__startswith=INVALID_PREFIX).count())

    # -- housekeeping and counts ----------------------------------------------------------

    def prune_delivered(self, before: datetime, *, batch_size: int = 1000) -> int:
        """Delete delivered rows older than ``before``, in small batches (short locks)."""
        old = self.outbox().filter(status=Status.DELIVERED, delivered_at__lt=before)
        deleted = 0
        while True:
            ids = list(old.order_by("id").values_list("pk", flat=True)[:batch_size])
            if not ids:
                return deleted
            deleted += self.outbox().filter(pk__in=ids).delete()[0]

    def forget_users(self, user_ids: Sequence[str]) -> tuple[int, int]:
        """Delete every outbox row naming these users, of any event (a ``group_enriched``
        attributed to one of them included), their ``user_enriched`` ledger entries, and the
        entries of the events erased with them: (rows, entries)."""
        with transaction.atomic(using=self.using):
            named = self.outbox().filter(user_id__in=user_ids)
            # Another subject's entry that points at an event erased here (an account's
            # group_enriched attributed to the user) goes too: kept, it would tell the
            # ledger that content was recorded, and the account's facts would never go out.
            attributed = list(named.exclude(event=EVENT_NAME).values_list("event", "message_id"))
            rows = named.delete()[0]
            entries = self.ledger(EVENT_NAME).filter(subject_id__in=user_ids).delete()[0]
            by_kind: dict[str, list[str]] = {}
            for kind, message_id in attributed:
                by_kind.setdefault(kind, []).append(message_id)
            for kind, message_ids in by_kind.items():
                entries += self.ledger(kind).filter(message_id__in=message_ids).delete()[0]
        return rows, entries

    def forget_subjects(self, event: str, subject_ids: Sequence[str]) -> tuple[int, int]:
        """Delete every outbox row and the ledger entries of these subjects of one event
        kind (for ``group_enriched``: the accounts): (rows, entries)."""
        subject_field = event_type(event).SUBJECT_FIELD
        with transaction.atomic(using=self.using):
            rows = (
                self.outbox()
                .filter(event=event, **{f"{subject_field}__in": subject_ids})
                .delete()[0]
            )
            entries = self.ledger(event).filter(subject_id__in=subject_ids).delete()[0]
        return rows, entries

    def ledger_size(self) -> int:
        """How many subjects the ledger holds (everything ever recorded, backfills included)."""
        return int(LedgerEntry.objects.using(self.using).count())

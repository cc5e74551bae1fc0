"""Bad input: whatever a host app or a provider hands over, a save never raises, and each
enrichment becomes either a valid event or a dead outbox row whose error names the field.

Hypothesis feeds arbitrary values (None, numbers, bytes, huge strings, control characters,
NUL, lone surrogates, nested objects, lists where strings belong, timestamps of every shape,
naive datetimes) through a real save of ``tests.testapp.Profile``, through the signal with
``properties=``, and through the provider presets (signal ``provider=`` and a SOURCE with
``PROVIDER``). Every example runs inside the host's transaction, which must stay usable
afterwards (on PostgreSQL the save path is one statement without a savepoint, so an error of
ours would poison the host's transaction), and ends with a drain that must not crash.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import logging
import zoneinfo
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from django_app import dispatch, receivers
from django_app.api import build_event
from django_app.models import LedgerEntry, OutboxEvent, Status
from django_app.recording import storable
from django_app.signals import user_enriched
from tests.django.helpers import make_profile, thrivestack_to, tracking
from tests.testapp.models import Account, Profile
from tracking_adapter import PROPERTY_NAMES, EventValidationError, UserEnrichedEvent
from tracking_adapter.providers import PRESETS

pytestmark = pytest.mark.django_db(transaction=True)

DB_EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


def _nested(depth: int) -> dict[str, Any]:
    """A dict ``depth`` levels deep, built without recursion."""
    top: dict[str, Any] = {}
    level = top
    for _ in range(depth):
        level["a"] = {}
        level = level["a"]
    return top


# -- strategies ----------------------------------------------------------------------------

ANY_TEXT = st.text(alphabet=st.characters(codec=None), max_size=16)  # surrogates and NUL too
CONTROL_TEXT = st.text(
    alphabet=st.characters(max_codepoint=0x1F) | st.sampled_from(["\x7f", "\u2028", "\ufeff"]),
    min_size=1,
    max_size=8,
)
HUGE_TEXT = st.builds(
    lambda n, char: char * n, st.integers(256, 150_000), st.sampled_from(["x", "é", "\u4e2d", "😀"])
)
PLAIN_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=30
)
OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | PLAIN_TEXT
    | ANY_TEXT
    | CONTROL_TEXT
    | HUGE_TEXT
    | st.binary(max_size=12)
    | st.datetimes()
    | st.decimals(allow_nan=True)
)
VALUES = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=3)
        | st.tuples(children, children)
        | st.dictionaries(ANY_TEXT, children, max_size=3)
        | st.frozensets(st.integers(), max_size=2)
    ),
    max_leaves=8,
)
TIMESTAMPS = st.one_of(
    st.datetimes(),  # naive, from year 1 to 9999
    st.datetimes(timezones=OFFSETS),  # aware; at the edges the UTC instant is out of range
    st.datetimes(timezones=st.timezones()),
    st.dates(),
    st.datetimes(timezones=OFFSETS).map(lambda moment: moment.isoformat()),
    st.datetimes().map(lambda moment: moment.isoformat(sep=" ")),
    st.sampled_from(
        [
            "2023-11-02T00:30:08.276Z",
            "2023-11-02",
            "yesterday",
            "",
            "2023-13-45T99:99:99Z",
            "1699000000",
            "2023-11-02T00:30:08+05:30\x00",
        ]
    ),
    st.integers(),
    st.floats(),
    ANY_TEXT,
    VALUES,
)
_ids = itertools.count()


def fresh_id(prefix: str) -> st.SearchStrategy[str]:
    return st.builds(lambda: f"{prefix}{next(_ids)}")


IDS = st.one_of(
    fresh_id("user-"),
    fresh_id("user-"),  # twice: most examples should reach the properties
    VALUES,
    st.integers(256, 400).map(lambda n: "u" * n),  # longer than the outbox column
    st.builds(lambda n: f"user-\x00{n}", st.integers()),
)
EXTRA_NAMES = st.sampled_from(["plan", "score", "tags", "", "a.b", "\x00", "\ud800", "é"])
PROPERTIES = st.dictionaries(st.sampled_from(PROPERTY_NAMES) | EXTRA_NAMES, VALUES, max_size=6)


# -- what every example checks -------------------------------------------------------------


@pytest.fixture
def deliver_to(settings: Any, receiver: Any) -> Any:
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    return receiver


@contextlib.contextmanager
def host_transaction() -> Iterator[None]:
    """The host app's transaction (ATOMIC_REQUESTS); it must still work after our part."""
    with transaction.atomic():
        yield
        # Poisoned by an error of ours, PostgreSQL would refuse this ("current transaction
        # is aborted") and the host's request would fail.
        Account.objects.exists()


def last_id() -> int:
    return OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def expectation(build: Any) -> UserEnrichedEvent | EventValidationError:
    try:
        return build()  # type: ignore[no-any-return]
    except EventValidationError as exc:
        return exc


def as_doubles(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:  # an integer beyond any double: compared as it is
            return value
    if isinstance(value, list):
        return [as_doubles(item) for item in value]
    if isinstance(value, dict):
        return {key: as_doubles(item) for key, item in value.items()}
    return value


def check_outcome(
    expected: UserEnrichedEvent | EventValidationError,
    *,
    since: int,
    given_names: set[str],
    previous_hash: str | None,
    caplog: pytest.LogCaptureFixture,
    skip_empty: bool = False,
) -> None:
    """One valid pending row, or one dead row naming a field we gave, or nothing new because
    the ledger already holds that content (or, for the automatic source, because a user never
    recorded has nothing yet). Never an unexpected error."""
    unexpected = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not unexpected, [r.getMessage()[:300] for r in unexpected]
    new = list(OutboxEvent.objects.filter(id__gt=since))
    assert len(new) <= 1, new
    if isinstance(expected, EventValidationError):
        assert len(new) == 1, f"invalid data left no dead row: {expected}"
        [row] = new
        assert row.status == Status.DEAD
        assert "invalid data, not sent" in row.last_error
        paths = [path for path, _message in expected.problems]
        tops = {path.split(".")[0].split("[")[0] for path in paths}
        assert tops & given_names, (paths, given_names)
        for path in paths:
            assert storable(path) in row.last_error, (path, row.last_error[:300])
        return
    if not new:
        blank = not any(expected.properties.to_wire().values())
        if not (skip_empty and previous_hash is None and blank):
            assert previous_hash == expected.content_hash(), "a valid event was not recorded"
        return
    [row] = new
    assert row.status == Status.PENDING, row.last_error
    stored = UserEnrichedEvent.model_validate(row.payload)
    # The same content, compared as JSON readers see numbers (doubles): PostgreSQL's jsonb
    # keeps a number as the decimal it was written as, so an extra property's float 1e16
    # comes back as the integer 10000000000000000, and 6.430198442022767e16 as an integer a
    # double reads as that same float.
    assert as_doubles(json.loads(stored.properties.to_json())) == as_doubles(
        json.loads(expected.properties.to_json())
    )
    assert stored.group_id == expected.group_id
    assert stored.user_id == expected.user_id
    body = stored.to_thrivestack_json()
    assert json.loads(body.decode("utf-8"))["user_id"] == expected.user_id


def drain_everything(receiver: Any) -> None:
    """A drain never crashes; every valid pending event reaches the receiver."""
    stats = dispatch.drain()
    assert stats.retried == 0, OutboxEvent.objects.filter(status=Status.PENDING).first()
    assert not OutboxEvent.objects.filter(status=Status.PENDING).exists()
    assert (
        not OutboxEvent.objects.filter(status=Status.DEAD)
        .exclude(message_id__startswith="invalid-")
        .exists()
    )


def ledger_hash(user_id: Any) -> str | None:
    if not isinstance(user_id, str) or "\x00" in user_id:
        return None
    with contextlib.suppress(UnicodeEncodeError):
        user_id.encode("utf-8")
        return (
            LedgerEntry.objects.filter(subject_id=user_id)
            .values_list("content_hash", flat=True)
            .first()
        )
    return None


# -- the signal with properties= -----------------------------------------------------------


@DB_EXAMPLES
@given(user_id=IDS, group_id=IDS, properties=PROPERTIES, timestamp=st.none() | TIMESTAMPS)
def test_signal_with_arbitrary_values(
    deliver_to: Any,
    caplog: pytest.LogCaptureFixture,
    user_id: Any,
    group_id: Any,
    properties: dict[str, Any],
    timestamp: Any,
) -> None:
    caplog.clear()
    values: dict[str, Any] = {"user_id": user_id, "group_id": group_id, "properties": properties}
    if timestamp is not None:
        values["timestamp"] = timestamp
    expected = expectation(lambda: build_event(**values))
    previous = ledger_hash(getattr(expected, "user_id", None))
    since = last_id()

    with host_transaction():
        user_enriched.send(sender=None, **values)  # never raises

    check_outcome(
        expected,
        since=since,
        given_names=set(values),
        previous_hash=previous,
        caplog=caplog,
    )
    drain_everything(deliver_to)


@DB_EXAMPLES
@given(
    zone=st.sampled_from(
        ["Asia/Kolkata", "America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC"]
    ),
    moment=st.datetimes(),  # naive: read in the current time zone, as Django does
)
def test_naive_timestamps_in_any_current_time_zone(
    deliver_to: Any, caplog: pytest.LogCaptureFixture, zone: str, moment: dt.datetime
) -> None:
    caplog.clear()
    values = {
        "user_id": f"tz-{next(_ids)}",
        "group_id": "g",
        "properties": {"enrichment_city": "Pune"},
        "timestamp": moment,
    }
    since = last_id()
    with timezone.override(zone):
        expected = expectation(lambda: build_event(**values))
        with host_transaction():
            user_enriched.send(sender=None, **values)
    check_outcome(
        expected, since=since, given_names={"timestamp"}, previous_hash=None, caplog=caplog
    )
    if isinstance(expected, UserEnrichedEvent):
        local = moment.replace(tzinfo=zoneinfo.ZoneInfo(zone))
        assert expected.timestamp == local.astimezone(dt.UTC).replace(
            microsecond=moment.microsecond // 1000 * 1000
        )
    drain_everything(deliver_to)


# -- provider payloads ---------------------------------------------------------------------

PAYLOADS = st.one_of(
    VALUES,
    st.fixed_dictionaries(
        {},
        optional={
            "person": st.dictionaries(ANY_TEXT, VALUES, max_size=4),
            "name": VALUES,
            "geo": st.dictionaries(st.sampled_from(["city", "country", "state"]), VALUES),
            "employment": VALUES,
            "emailProvider": VALUES,
            "email": VALUES,
            "phone_numbers": VALUES,
            "departments": VALUES,
            "organization": VALUES,
            "title": VALUES,
            "first_name": VALUES,
            "phone_numbers.0": VALUES,
            "twitter": VALUES,
            "experience": VALUES,
            "job_title": VALUES,
            "location_name": VALUES,
            "mobile_phone": VALUES,
        },
    ),
)


def payload_keys(payload: Any) -> set[str]:
    """The payload's own field names, bare or inside the ``person`` envelope: a preset's
    error names the payload field whose shape is wrong."""
    keys: set[str] = set()
    if isinstance(payload, dict):
        keys.update(k for k in payload if isinstance(k, str))
        if isinstance(payload.get("person"), dict):
            keys.update(k for k in payload["person"] if isinstance(k, str))
    return keys


@DB_EXAMPLES
@given(provider=st.sampled_from(sorted(PRESETS)), payload=PAYLOADS)
def test_provider_presets_with_arbitrary_payloads(
    deliver_to: Any, caplog: pytest.LogCaptureFixture, provider: str, payload: Any
) -> None:
    caplog.clear()
    user_id = f"prov-{next(_ids)}"
    values = {"user_id": user_id, "group_id": "acct_1", "provider": provider, "payload": payload}
    expected = expectation(lambda: build_event(**values))
    since = last_id()

    with host_transaction():
        user_enriched.send(sender=None, **values)

    check_outcome(
        expected,
        since=since,
        given_names={provider, "properties", *PROPERTY_NAMES, *payload_keys(payload)},
        previous_hash=None,
        caplog=caplog,
    )
    drain_everything(deliver_to)


# -- a real save of Profile ----------------------------------------------------------------

MAPPED = {
    "first_name": "enrichment_first_name",
    "last_name": "enrichment_last_name",
    "city": "enrichment_city",
    "country": "enrichment_country",
    "company": "enrichment_employment_name",
    "title": "enrichment_employment_title",
    "phone": "enrichment_phone",
}
FIELD_VALUES = st.dictionaries(
    st.sampled_from(sorted(MAPPED)), st.one_of(PLAIN_TEXT, VALUES), min_size=1, max_size=4
)
ENRICHED_AT = st.one_of(
    st.just("unchanged"),
    st.none(),
    st.datetimes(),  # naive: Django warns and the app makes it aware in the current zone
    st.datetimes(timezones=OFFSETS),
    st.datetimes(timezones=st.timezones()),
)


class _Rollback(Exception):
    pass


def django_can_save(apply: Any) -> bool:
    """Whether Django itself (tracking disconnected) can store these values: a value the
    database refuses is the host's own error, raised with or without this app."""
    receivers.disconnect_source()
    try:
        with transaction.atomic():
            apply()
            raise _Rollback
    except _Rollback:
        return True
    except Exception:
        return False
    finally:
        receivers.connect()


@pytest.fixture
def base_profile(deliver_to: Any) -> Profile:
    return make_profile(city="Base", company="Acme")


@DB_EXAMPLES
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # naive datetimes: Django's own warning
@given(fields=FIELD_VALUES, enriched_at=ENRICHED_AT, drop_account=st.booleans())
def test_saving_a_profile_holding_arbitrary_values(
    deliver_to: Any,
    base_profile: Profile,
    caplog: pytest.LogCaptureFixture,
    fields: dict[str, Any],
    enriched_at: Any,
    drop_account: bool,
) -> None:
    caplog.clear()

    # Each example starts from the same stored row (update() sends no signal).
    Profile.objects.filter(pk=base_profile.pk).update(
        account=base_profile.account, enriched_at=None, **dict.fromkeys(MAPPED, "")
    )

    def apply() -> Profile:
        profile = Profile.objects.get(pk=base_profile.pk)
        for name, value in fields.items():
            setattr(profile, name, value)
        if enriched_at != "unchanged":
            profile.enriched_at = enriched_at
        if drop_account:
            profile.account = None
        profile.save()
        return profile

    assume(django_can_save(apply))
    previous = ledger_hash(base_profile.tracking_user_id)
    since = last_id()

    with host_transaction():
        saved = apply()  # never raises

    given_names = {MAPPED[name] for name in fields} | {"properties"}
    if enriched_at != "unchanged":
        given_names.add("timestamp")
    if drop_account:
        given_names.add("group_id")
    check_outcome(
        expectation(lambda: build_event(saved)),
        since=since,
        given_names=given_names,
        previous_hash=previous,
        caplog=caplog,
        skip_empty=True,
    )
    drain_everything(deliver_to)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | PLAIN_TEXT
    | ANY_TEXT
    | CONTROL_TEXT
    | HUGE_TEXT,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(ANY_TEXT, children, max_size=3)
    ),
    max_leaves=8,
)
JSON_PAYLOADS = st.one_of(
    st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=4),
    st.fixed_dictionaries(
        {},
        optional={
            key: JSON_VALUES
            for key in ("name", "geo", "employment", "emailProvider", "email", "phone", "twitter")
        },
    ),
    st.fixed_dictionaries({"person": st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=4)}),
    st.lists(JSON_VALUES, max_size=2),
    PLAIN_TEXT,
    st.integers(),
)


@DB_EXAMPLES
@given(payload=JSON_PAYLOADS)
def test_saving_a_profile_whose_provider_payload_is_arbitrary(
    settings: Any, receiver: Any, caplog: pytest.LogCaptureFixture, payload: Any
) -> None:
    settings.TRACKING_ADAPTER = {
        **thrivestack_to(receiver),
        "SOURCE": {
            "MODEL": "testapp.Profile",
            "USER_ID": "user_id",
            "GROUP_ID": "account.external_id",
            "PROVIDER": ["clearbit", "clearbit"],
        },
    }
    caplog.clear()
    profile = make_profile()

    def apply() -> Profile:
        fresh = Profile.objects.get(pk=profile.pk)
        fresh.clearbit = payload
        fresh.save()
        return fresh

    assume(django_can_save(apply))
    since = last_id()

    with host_transaction():
        saved = apply()

    check_outcome(
        expectation(lambda: build_event(saved)),
        since=since,
        given_names={"clearbit", "properties", *PROPERTY_NAMES, *payload_keys(payload)},
        previous_hash=ledger_hash(str(profile.user_id)),
        caplog=caplog,
        skip_empty=True,
    )
    drain_everything(receiver)


# -- targeted cases the properties found or must keep finding ------------------------------


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"user_id": "u" * 300}, "user_id"),
        ({"group_id": "g" * 300}, "group_id"),
        ({"user_id": "user\x00one"}, "user_id"),
        ({"properties": {"enrichment_city": "Pu\x00ne"}}, "enrichment_city"),
        ({"properties": {"plan": ["pro", "x\x00"]}}, "plan"),
        ({"properties": {"\x00": b"bytes"}}, "properties"),
        ({"properties": {"\ud800": 1}}, "properties"),
        ({"user_id": "\ud800"}, "user_id"),
        ({"properties": {"deep": _nested(5000)}}, "deep"),
    ],
)
def test_values_no_database_can_store_become_dead_rows_naming_the_field(
    deliver_to: Any, caplog: pytest.LogCaptureFixture, values: dict[str, Any], field: str
) -> None:
    event = {"user_id": "u_1", "group_id": "g_1", "properties": {"enrichment_city": "Pune"}}
    event.update(values)
    with host_transaction():
        user_enriched.send(sender=None, **event)
        profile = make_profile(city="Pune")  # the host carries on in the same transaction
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    dead = OutboxEvent.objects.get(status=Status.DEAD)
    assert field in dead.last_error
    assert "\x00" not in dead.last_error
    assert OutboxEvent.objects.filter(user_id=profile.tracking_user_id).exists()
    drain_everything(deliver_to)


def test_an_event_over_the_sinks_limit_dies_alone_and_is_never_retried(settings, receiver):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    big = "x" * (2 * 1024 * 1024)  # over ThriveStack's 2 MB per request on its own
    for number in range(10):
        user_enriched.send(
            sender=None,
            user_id=f"u{number}",
            group_id="g",
            properties={"enrichment_city": big if number in (3, 7) else f"City {number}"},
        )
    assert OutboxEvent.objects.filter(status=Status.PENDING).count() == 10

    stats = dispatch.drain()

    assert (stats.delivered, stats.dead, stats.retried) == (8, 2, 0)
    assert receiver.item_count == 8
    dead = OutboxEvent.objects.filter(status=Status.DEAD).order_by("user_id")
    assert [row.user_id for row in dead] == ["u3", "u7"]
    for row in dead:
        assert "over this sink's limit" in row.last_error
        assert row.attempts == 1
    assert dispatch.drain().claimed == 0  # dead: never claimed again


def test_an_event_over_segments_32_kb_dies_alone(settings, receiver):
    settings.TRACKING_ADAPTER = tracking(
        SINK="segment", SINK_OPTIONS={"write_key": "test-write-key", "host": receiver.url}
    )
    for number in range(6):
        extra = {"notes": "n" * 40_000} if number == 2 else {}
        user_enriched.send(
            sender=None,
            user_id=f"u{number}",
            group_id="g",
            properties={"enrichment_city": f"City {number}", **extra},
        )

    stats = dispatch.drain(batch_size=3)

    assert (stats.delivered, stats.dead, stats.retried) == (5, 1, 0)
    row = OutboxEvent.objects.get(status=Status.DEAD)
    assert row.user_id == "u2"
    assert "32,000 bytes per event" in row.last_error
    assert {item["userId"] for item in receiver.items} == {"u0", "u1", "u3", "u4", "u5"}


def test_a_stored_payload_that_cannot_be_read_back_dies_alone(settings, receiver, admin_client):
    # Rows written by an older version, by hand, or by a bug: the dispatcher must not choke
    # on one (a poison pill would stop its whole batch, forever, on every worker).
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    for number in range(5):
        user_enriched.send(
            sender=None, user_id=f"u{number}", group_id="g", properties={"plan": number}
        )
    poisoned = OutboxEvent.objects.get(user_id="u2")
    unreadable = '{"user_id": "u2", "group_id": "g", "properties": {"n": 1%s}}' % ("0" * 5000)
    table = OutboxEvent._meta.db_table
    cast = "::jsonb" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET payload = %s{cast} WHERE id = %s", [unreadable, poisoned.pk]
        )

    stats = dispatch.drain()

    assert (stats.delivered, stats.dead, stats.retried) == (4, 1, 0)
    assert {item["user_id"] for item in receiver.items} == {"u0", "u1", "u3", "u4"}
    dead = OutboxEvent.objects.only("status", "last_error").get(pk=poisoned.pk)
    assert dead.status == Status.DEAD
    assert "stored payload" in dead.last_error
    # ... and the admin still shows it, with its reason and its stored text.
    changelist = admin_client.get(
        reverse("admin:django_app_outboxevent_changelist") + "?status__exact=dead"
    )
    assert changelist.status_code == 200
    assert "stored payload cannot be read back" in changelist.content.decode()
    page = admin_client.get(reverse("admin:django_app_outboxevent_change", args=[poisoned.pk]))
    assert page.status_code == 200
    assert "0" * 5000 in page.content.decode()

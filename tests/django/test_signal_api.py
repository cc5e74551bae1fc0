"""Recording ``user_enriched``: the signal, the automatic SOURCE, the API and capture_events()."""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import logging
import time
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import transaction

from django_app.api import track_enrichment, track_many
from django_app.models import LedgerEntry, OutboxEvent, Status
from django_app.signals import user_enriched
from django_app.testing import capture_events
from tests.testapp.models import Account, Profile
from tracking_adapter import PROPERTY_NAMES, EventValidationError, UserEnrichedEvent

BASE: dict[str, Any] = copy.deepcopy(django_settings.TRACKING_ADAPTER)
ENRICHED_AT = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)

_n = itertools.count(1)


class Boom(Exception):
    pass


def make_profile(**fields: Any) -> Profile:
    n = next(_n)
    user = get_user_model().objects.create(username=f"person{n}")
    if "account" not in fields:
        fields["account"], _ = Account.objects.get_or_create(external_id="acct_1")
    return Profile.objects.create(user=user, **fields)


def rows() -> list[OutboxEvent]:
    return list(OutboxEvent.objects.order_by("id"))


def cities() -> list[str]:
    return [r.payload["properties"]["enrichment_city"] for r in rows()]


def forget_everything() -> None:
    OutboxEvent.objects.all().delete()
    LedgerEntry.objects.all().delete()


def clearbit_person() -> dict[str, Any]:
    text = resources.files("tracking_adapter.fixtures").joinpath("clearbit_person.json")
    return json.loads(text.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.fixture(params=["settings", "fields"])
def source_kind(request: pytest.FixtureRequest, settings: Any) -> str:
    """Run the automatic-source tests with the test settings' SOURCE (USER_ID is a property,
    so every save is examined) and with one whose paths all start at concrete fields (so
    the cheap snapshot comparison decides)."""
    if request.param == "fields":
        value = copy.deepcopy(BASE)
        value["SOURCE"]["USER_ID"] = "user_id"
        settings.TRACKING_ADAPTER = value
        from django_app.runtime import get_source

        source = get_source()
        assert source is not None
        assert source.watched_fields is not None
        assert "city" in source.watched_fields
    return str(request.param)


# -- the signal -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_signal_records_one_event_mapped_per_source() -> None:
    account = Account.objects.create(external_id="acct_42", name="Example")
    profile = make_profile(
        account=account,
        first_name="Asha",
        last_name="Rao",
        city="Pune",
        country="India",
        company="Example Inc",
        title="CTO",
        phone="+91 20 5555 0100",
        visits=3,
        enriched_at=ENRICHED_AT,
    )
    forget_everything()

    user_enriched.send(sender=Profile, instance=profile)

    [row] = rows()
    payload = row.payload
    assert payload["user_id"] == f"user_{profile.user_id}"
    assert payload["group_id"] == "acct_42"
    assert payload["timestamp"] in ("2024-05-06T07:08:09.123Z", "2024-05-06T07:08:09.123000Z")
    properties = payload["properties"]
    assert properties["enrichment_first_name"] == "Asha"
    assert properties["enrichment_last_name"] == "Rao"
    assert properties["enrichment_city"] == "Pune"
    assert properties["enrichment_country"] == "India"
    assert properties["enrichment_employment_name"] == "Example Inc"
    assert properties["enrichment_employment_title"] == "CTO"
    assert properties["enrichment_phone"] == ["+91 20 5555 0100"]
    assert properties["enrichment_twitter_handle"] == ""
    assert set(PROPERTY_NAMES) <= set(properties)
    assert row.user_id == f"user_{profile.user_id}"
    assert row.group_id == "acct_42"
    assert row.status == Status.PENDING
    assert row.message_id == payload["message_id"]
    # The stored payload is a valid event, and the one the sink will get.
    event = UserEnrichedEvent.model_validate(payload)
    assert event.timestamp == ENRICHED_AT.replace(microsecond=123000)
    assert row.content_hash == event.content_hash()


@pytest.mark.django_db
def test_signal_again_unchanged_records_nothing() -> None:
    profile = make_profile(city="Pune")
    forget_everything()
    user_enriched.send(sender=Profile, instance=profile)
    user_enriched.send(sender=Profile, instance=profile)
    user_enriched.send(sender=Profile, instance=Profile.objects.get(pk=profile.pk))
    assert len(rows()) == 1
    assert LedgerEntry.objects.count() == 1


@pytest.mark.django_db
def test_signal_after_a_change_records_again() -> None:
    profile = make_profile(city="Pune")
    forget_everything()
    user_enriched.send(sender=Profile, instance=profile)
    profile.city = "Mumbai"  # changed in memory, as an enrichment job would before saving
    user_enriched.send(sender=Profile, instance=profile)
    assert cities() == ["Pune", "Mumbai"]


@pytest.mark.django_db
def test_force_records_again_without_a_timestamp() -> None:
    profile = make_profile(city="Pune")
    forget_everything()
    user_enriched.send(sender=Profile, instance=profile)
    # The event's time is "now" to the millisecond; a forced resend within the same
    # millisecond runs into the message_id bug shown by the next test.
    time.sleep(0.003)
    user_enriched.send(sender=Profile, instance=profile, force=True)
    assert cities() == ["Pune", "Pune"]


@pytest.mark.django_db
def test_force_records_again_with_a_timestamp(caplog: pytest.LogCaptureFixture) -> None:
    profile = make_profile(city="Pune", enriched_at=ENRICHED_AT)
    forget_everything()
    user_enriched.send(sender=Profile, instance=profile)
    with caplog.at_level(logging.ERROR):
        user_enriched.send(sender=Profile, instance=profile, force=True)
    assert cities() == ["Pune", "Pune"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.django_db
def test_signal_with_explicit_values_and_no_instance() -> None:
    user_enriched.send(
        sender=None,
        user_id="u_1",
        group_id="acct_9",
        properties={"enrichment_city": "Pune", "enrichment_employment_title": "CTO"},
    )
    [row] = rows()
    assert (row.user_id, row.group_id) == ("u_1", "acct_9")
    assert row.payload["user_id"] == "u_1"
    assert row.payload["group_id"] == "acct_9"
    assert row.payload["properties"]["enrichment_city"] == "Pune"
    assert row.payload["properties"]["enrichment_employment_title"] == "CTO"
    assert row.payload["properties"]["enrichment_country"] == ""


@pytest.mark.django_db
def test_explicit_values_win_over_the_mapping() -> None:
    profile = make_profile(city="Pune")
    forget_everything()
    user_enriched.send(
        sender=Profile,
        instance=profile,
        group_id="acct_override",
        properties={"enrichment_city": "Goa"},
        timestamp=ENRICHED_AT,
    )
    [row] = rows()
    assert row.payload["user_id"] == f"user_{profile.user_id}"
    assert row.payload["group_id"] == "acct_override"
    assert row.payload["properties"]["enrichment_city"] == "Goa"
    assert row.payload["timestamp"].startswith("2024-05-06T07:08:09.123")


@pytest.mark.django_db
def test_signal_with_a_provider_payload() -> None:
    user_enriched.send(
        sender=None,
        user_id="u_cb",
        group_id="acct_cb",
        provider="clearbit",
        payload=clearbit_person(),
    )
    [row] = rows()
    properties = row.payload["properties"]
    assert properties["enrichment_city"] == "San Francisco"
    assert properties["enrichment_country_code"] == "US"
    assert properties["enrichment_full_name"] == "Alex MacCaw"
    assert properties["enrichment_first_name"] == "Alex"
    assert properties["enrichment_employment_title"] == "Co-founder and CEO"
    assert properties["enrichment_twitter_handle"] == "maccaw"
    assert properties["enrichment_linkedin_handle"] == "in/alex-maccaw-ab592978"
    assert properties["enrichment_time_zone"] == "America/Los_Angeles"
    assert properties["enrichment_phone"] == ["+1 415-555-0132"]
    assert properties["enrichment_email_provider"] == ""  # emailProvider false
    assert row.user_id == "u_cb"


@pytest.mark.django_db
def test_invalid_data_does_not_raise_and_leaves_a_dead_row(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        responses = user_enriched.send(
            sender=None, user_id="u_bad", group_id="acct_1", properties={"enrichment_city": 5}
        )
    assert len(responses) == 1
    [row] = rows()
    assert row.status == Status.DEAD
    assert "enrichment_city" in row.last_error
    assert row.user_id == "u_bad"
    assert row.message_id.startswith("invalid-")
    assert LedgerEntry.objects.count() == 0  # not "already sent": fixing the data records it
    assert any("enrichment_city" in r.getMessage() for r in caplog.records)
    user_enriched.send(
        sender=None, user_id="u_bad", group_id="acct_1", properties={"enrichment_city": "Pune"}
    )
    assert [r.status for r in rows()] == [Status.DEAD, Status.PENDING]


@pytest.mark.django_db
def test_invalid_provider_payload_leaves_a_dead_row() -> None:
    person = clearbit_person()
    person["person"]["geo"]["city"] = {"name": "San Francisco"}
    user_enriched.send(
        sender=None, user_id="u_cb", group_id="acct_cb", provider="clearbit", payload=person
    )
    [row] = rows()
    assert row.status == Status.DEAD
    assert "enrichment_city" in row.last_error


@pytest.mark.django_db
def test_missing_ids_leave_a_dead_row() -> None:
    user_enriched.send(sender=None, properties={"enrichment_city": "Pune"})
    [row] = rows()
    assert row.status == Status.DEAD
    assert "user_id" in row.last_error
    assert row.user_id == "(unknown)"


@pytest.mark.django_db
def test_signal_with_nothing_to_map_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        user_enriched.send(sender=None, user_id="u_1", group_id="acct_1")
        user_enriched.send(sender=None, instance=None, unexpected_argument=1)
    assert rows() == []
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 2


@pytest.mark.django_db
def test_unknown_provider_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        user_enriched.send(sender=None, user_id="u", group_id="g", provider="nope", payload={})
    assert rows() == []
    assert any("nope" in r.getMessage() for r in caplog.records)


# -- the automatic SOURCE -------------------------------------------------------------------


@pytest.mark.django_db
def test_creating_a_profile_records_one_event(source_kind: str) -> None:
    make_profile(city="Pune", first_name="Asha")
    [row] = rows()
    assert row.payload["properties"]["enrichment_city"] == "Pune"
    assert row.payload["properties"]["enrichment_first_name"] == "Asha"
    assert row.group_id == "acct_1"


@pytest.mark.django_db
def test_saving_unchanged_records_nothing(source_kind: str) -> None:
    profile = make_profile(city="Pune")
    profile.save()
    Profile.objects.get(pk=profile.pk).save()
    assert cities() == ["Pune"]


@pytest.mark.django_db
def test_changing_an_unmapped_field_records_nothing(source_kind: str) -> None:
    profile = make_profile(city="Pune")
    profile.visits += 1
    profile.save()
    loaded = Profile.objects.get(pk=profile.pk)
    loaded.visits += 1
    loaded.save()
    assert cities() == ["Pune"]


@pytest.mark.django_db
def test_changing_a_mapped_field_records_one(source_kind: str) -> None:
    profile = make_profile(city="Pune")
    profile.city = "Mumbai"
    profile.save()
    loaded = Profile.objects.get(pk=profile.pk)
    loaded.city = "Delhi"
    loaded.save()
    loaded.save()
    assert cities() == ["Pune", "Mumbai", "Delhi"]


@pytest.mark.django_db
def test_changing_the_account_records_one(source_kind: str) -> None:
    profile = make_profile(city="Pune")
    profile.account = Account.objects.create(external_id="acct_2")
    profile.save()
    assert [r.group_id for r in rows()] == ["acct_1", "acct_2"]


@pytest.mark.django_db
def test_save_with_update_fields_of_unmapped_fields_records_nothing(source_kind: str) -> None:
    profile = make_profile(city="Pune")
    profile.visits = 10
    profile.save(update_fields=["visits"])
    assert cities() == ["Pune"]


@pytest.mark.django_db
def test_save_with_update_fields_of_a_mapped_field_records_one(source_kind: str) -> None:
    profile = make_profile(city="Pune")
    profile.city = "Mumbai"
    profile.save(update_fields=["city"])
    assert cities() == ["Pune", "Mumbai"]


@pytest.mark.parametrize(
    "source_kind",
    [
        "settings",
        "fields",
    ],
    indirect=True,
)
@pytest.mark.django_db
def test_update_fields_never_records_unsaved_values(source_kind: str) -> None:
    profile = make_profile(city="Pune")
    profile.city = "Mumbai"  # changed in memory but not saved
    profile.visits = 10
    profile.save(update_fields=["visits"])
    assert Profile.objects.get(pk=profile.pk).city == "Pune"
    assert cities() == ["Pune"]


@pytest.mark.parametrize(
    "source_kind",
    [
        "settings",
        "fields",
    ],
    indirect=True,
)
@pytest.mark.django_db
def test_a_change_left_out_of_update_fields_is_recorded_when_saved(source_kind: str) -> None:
    profile = make_profile(city="Pune")
    profile.city = "Mumbai"
    profile.visits = 10
    profile.save(update_fields=["visits"])
    profile.save()  # now the city is saved
    assert Profile.objects.get(pk=profile.pk).city == "Mumbai"
    assert cities()[-1] == "Mumbai"


@pytest.mark.django_db(transaction=True)
def test_rolled_back_transaction_leaves_no_event(source_kind: str) -> None:
    with contextlib.suppress(Boom), transaction.atomic():
        make_profile(city="Pune")
        raise Boom
    assert not Profile.objects.exists()
    assert rows() == []
    assert LedgerEntry.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_rolled_back_change_leaves_no_event(source_kind: str) -> None:
    profile = make_profile(city="Pune")
    with contextlib.suppress(Boom), transaction.atomic():
        profile.city = "Delhi"
        profile.save()
        raise Boom
    assert cities() == ["Pune"]
    # The ledger rolled back too: the committed content is still Pune.
    assert track_enrichment(Profile.objects.get(pk=profile.pk)) is not None
    assert cities() == ["Pune"]


@pytest.mark.django_db(transaction=True)
def test_savepoint_rollback_keeps_only_the_committed_change(source_kind: str) -> None:
    profile = make_profile(city="Pune")
    with transaction.atomic():
        profile.city = "Mumbai"
        profile.save()
        try:
            with transaction.atomic():
                other = Profile.objects.get(pk=profile.pk)
                other.city = "Delhi"
                other.save()
                raise Boom
        except Boom:
            pass
    assert Profile.objects.get(pk=profile.pk).city == "Mumbai"
    assert cities() == ["Pune", "Mumbai"]
    # The ledger holds the committed content: Mumbai again records nothing, Delhi does.
    again = Profile.objects.get(pk=profile.pk)
    result = track_enrichment(again)
    assert result is not None
    assert not result.created
    again.city = "Delhi"
    again.save()
    assert cities() == ["Pune", "Mumbai", "Delhi"]


@pytest.mark.parametrize(
    "source_kind",
    [
        "settings",
        "fields",
    ],
    indirect=True,
)
@pytest.mark.django_db(transaction=True)
def test_retrying_a_rolled_back_save_records_the_change(source_kind: str) -> None:
    profile = make_profile(city="Pune")
    with contextlib.suppress(Boom), transaction.atomic():
        profile.city = "Delhi"
        profile.save()
        raise Boom
    profile.save()  # the retry commits
    assert Profile.objects.get(pk=profile.pk).city == "Delhi"
    assert cities() == ["Pune", "Delhi"]


@pytest.mark.django_db
def test_queryset_update_bypasses_then_track_enrichment_records(source_kind: str) -> None:
    profile = make_profile(city="Pune")
    Profile.objects.filter(pk=profile.pk).update(city="Mumbai")
    assert cities() == ["Pune"]
    result = track_enrichment(Profile.objects.get(pk=profile.pk))
    assert result is not None
    assert result.created
    assert result.row is not None
    assert result.event.properties.enrichment_city == "Mumbai"
    assert cities() == ["Pune", "Mumbai"]
    again = track_enrichment(Profile.objects.get(pk=profile.pk))
    assert again is not None
    assert not again.created
    assert cities() == ["Pune", "Mumbai"]


@pytest.mark.django_db
def test_track_many_records_only_what_changed(source_kind: str) -> None:
    profiles = [make_profile(city="Pune") for _ in range(3)]
    Profile.objects.filter(pk__in=[p.pk for p in profiles[:2]]).update(city="Goa")
    assert track_many(Profile.objects.order_by("pk")) == 2
    assert cities() == ["Pune", "Pune", "Pune", "Goa", "Goa"]
    assert track_many(Profile.objects.order_by("pk")) == 0
    assert track_many(Profile.objects.order_by("pk"), force=True) == 3
    assert len(rows()) == 8


@pytest.mark.django_db
def test_profile_without_an_account_leaves_a_dead_row(source_kind: str) -> None:
    profile = make_profile(city="Pune", account=None)
    assert Profile.objects.filter(pk=profile.pk).exists()
    [row] = rows()
    assert row.status == Status.DEAD
    assert "group_id" in row.last_error


@pytest.mark.django_db
def test_source_with_a_provider_preset(settings: Any) -> None:
    value = copy.deepcopy(BASE)
    del value["SOURCE"]["PROPERTIES"]
    value["SOURCE"]["PROVIDER"] = ["clearbit", "clearbit"]
    settings.TRACKING_ADAPTER = value
    person = clearbit_person()
    profile = make_profile(clearbit=person)
    profile.visits = 5
    profile.save()
    person["person"]["geo"]["city"] = "Oakland"
    profile.clearbit = person
    profile.save()
    assert cities() == ["San Francisco", "Oakland"]
    assert rows()[0].payload["properties"]["enrichment_employment_name"] == "Example Inc"


@pytest.mark.parametrize(
    "user_id_path",
    [
        "tracking_user_id",
        "user_id",
    ],
)
@pytest.mark.django_db
def test_json_payload_changed_in_place_records_one(settings: Any, user_id_path: str) -> None:
    value = copy.deepcopy(BASE)
    del value["SOURCE"]["PROPERTIES"]
    value["SOURCE"]["PROVIDER"] = ["clearbit", "clearbit"]
    value["SOURCE"]["USER_ID"] = user_id_path
    settings.TRACKING_ADAPTER = value
    make_profile(clearbit=clearbit_person())
    profile = Profile.objects.get()
    profile.clearbit["person"]["geo"]["city"] = "Oakland"
    profile.save()
    assert Profile.objects.get().clearbit["person"]["geo"]["city"] == "Oakland"
    assert cities() == ["San Francisco", "Oakland"]


# -- capture_events -------------------------------------------------------------------------


@pytest.mark.django_db
def test_capture_events_captures_validated_events_and_writes_no_row() -> None:
    with capture_events() as events:
        profile = make_profile(city="Pune", title="CTO", phone="+91 1")
        user_enriched.send(sender=None, user_id="u_2", group_id="g_2", properties={})
    assert rows() == []
    assert LedgerEntry.objects.count() == 0
    assert len(events) == 2
    first, second = events
    assert isinstance(first, UserEnrichedEvent)
    assert first.user_id == f"user_{profile.user_id}"
    assert first.group_id == "acct_1"
    assert first.properties.enrichment_city == "Pune"
    assert first.properties.enrichment_employment_title == "CTO"
    assert first.properties.enrichment_phone == ["+91 1"]
    assert (second.user_id, second.group_id) == ("u_2", "g_2")
    # Outside the block, recording goes to the outbox again.
    profile.city = "Mumbai"
    profile.save()
    assert cities() == ["Mumbai"]


@pytest.mark.django_db
def test_capture_events_does_not_capture_invalid_data() -> None:
    with capture_events() as events:
        user_enriched.send(
            sender=None, user_id="u", group_id="g", properties={"enrichment_city": 5}
        )
    assert events == []
    assert [r.status for r in rows()] == [Status.DEAD]


# -- EXCLUDE_PROPERTIES ---------------------------------------------------------------------


@pytest.fixture
def city_excluded(settings: Any) -> None:
    value = copy.deepcopy(BASE)
    value["EXCLUDE_PROPERTIES"] = ["enrichment_city"]
    settings.TRACKING_ADAPTER = value


@pytest.mark.django_db
@pytest.mark.usefixtures("city_excluded")
def test_excluded_property_is_not_stored() -> None:
    make_profile(city="Pune", country="India")
    [row] = rows()
    properties = row.payload["properties"]
    assert properties.get("enrichment_city", "") == ""
    assert "Pune" not in json.dumps(row.payload)
    assert properties["enrichment_country"] == "India"


@pytest.mark.django_db
@pytest.mark.usefixtures("city_excluded")
def test_excluded_property_change_records_nothing() -> None:
    profile = make_profile(city="Pune", country="India")
    profile.city = "Mumbai"
    profile.save()
    assert len(rows()) == 1
    profile.country = "Nepal"
    profile.save()
    assert [r.payload["properties"]["enrichment_country"] for r in rows()] == ["India", "Nepal"]


@pytest.mark.django_db
@pytest.mark.usefixtures("city_excluded")
def test_excluded_property_is_dropped_from_signal_values_and_captures() -> None:
    user_enriched.send(
        sender=None,
        user_id="u_1",
        group_id="g_1",
        properties={"enrichment_city": "Pune", "enrichment_state": "MH"},
    )
    [row] = rows()
    assert "Pune" not in json.dumps(row.payload)
    assert row.payload["properties"]["enrichment_state"] == "MH"
    with capture_events() as events:
        make_profile(city="Pune")
    assert [e.properties.enrichment_city for e in events] == [""]


@pytest.mark.django_db
def test_excluded_extra_property(settings: Any) -> None:
    value = copy.deepcopy(BASE)
    value["EXCLUDE_PROPERTIES"] = ["internal_score"]
    settings.TRACKING_ADAPTER = value
    user_enriched.send(
        sender=None,
        user_id="u_1",
        group_id="g_1",
        properties={"enrichment_city": "Pune", "internal_score": 97, "plan": "pro"},
    )
    [row] = rows()
    assert "internal_score" not in row.payload["properties"]
    assert row.payload["properties"]["plan"] == "pro"


def test_events_validated_together_are_each_what_validate_event_gives(settings):
    """validate_events (a backfill's batch, in one call into pydantic): the same event or
    the same error for each item as validate_event, in order, exclusions applied first."""
    from django_app.api import validate_event, validate_events

    settings.TRACKING_ADAPTER = {**settings.TRACKING_ADAPTER, "EXCLUDE_PROPERTIES": ["title"]}
    good = {
        "user_id": "u1",
        "group_id": "g1",
        "properties": {"enrichment_city": "Pune"},
        "timestamp": datetime(2024, 5, 1, tzinfo=UTC),
    }
    items = [
        good,
        {**good, "user_id": " "},  # blank id
        {**good, "properties": {"title": "CTO", "enrichment_city": 12}},  # excluded + wrong type
        {**good, "user_id": "u" * 300},  # longer than the outbox's column
        {**good, "user_id": "u2", "properties": {"title": "CTO"}},
    ]
    one_by_one = []
    for item in items:
        try:
            one_by_one.append(validate_event(item))
        except EventValidationError as exc:
            one_by_one.append(exc)
    together = validate_events(items)
    assert [type(result) for result in together] == [type(r) for r in one_by_one]
    assert [str(result) for result in together] == [str(r) for r in one_by_one]
    assert [r for r in together if not isinstance(r, Exception)] == [
        r for r in one_by_one if not isinstance(r, Exception)
    ]
    assert "title" not in together[4].properties.model_dump()
    assert "user_id" in str(together[1])
    assert "enrichment_city" in str(together[2])
    # All valid: the one call's events, storable checks included, none validated alone.
    expected = [validate_event(good), validate_event(items[4])]
    with mock.patch("django_app.api.validate_event", side_effect=AssertionError("alone")):
        assert validate_events([good, items[3]])[1].__class__ is EventValidationError
        assert validate_events([good, items[4]]) == expected

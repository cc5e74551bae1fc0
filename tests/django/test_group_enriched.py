"""``group_enriched`` end to end: its source, its signal, its ledger entries, its delivery,
its backfill, its erasure, and the checks of its settings."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction

from django_app import dispatch
from django_app.checks import check_settings
from django_app.models import LedgerEntry, OutboxEvent, Status
from django_app.signals import group_enriched, user_enriched
from django_app.testing import capture_events
from tests.django.helpers import make_profile, thrivestack_to, tracking
from tests.testapp.models import Account
from tracking_adapter import GROUP_PROPERTY_NAMES, GroupEnrichedEvent, UserEnrichedEvent

pytestmark = pytest.mark.django_db(transaction=True)

ENRICHED_AT = datetime(2024, 10, 20, 15, 51, 35, 59000, tzinfo=UTC)
GROUP_SOURCE: dict[str, Any] = {
    "MODEL": "testapp.Account",
    "GROUP_ID": "external_id",
    "USER_ID": "owner_tracking_id",
    "TIMESTAMP": "enriched_at",
    "PROPERTIES": {
        "enrichment_name": "name",
        "enrichment_domain": "domain",
        "enrichment_industry": "industry",
        "enrichment_employees": "employees",
        "enrichment_tags": "tags",
    },
}


def with_group_source(**overrides: Any) -> dict[str, Any]:
    return tracking(SOURCES={"group_enriched": {**GROUP_SOURCE, **overrides}})


@pytest.fixture
def group_source(settings: Any) -> None:
    settings.TRACKING_ADAPTER = with_group_source()


_owners = iter(range(1, 1_000_000))


def make_account(external_id: str, **fields: Any) -> Account:
    owner = User.objects.create(username=f"owner{next(_owners)}-{external_id}")
    return Account.objects.create(external_id=external_id, owner=owner, **fields)


def group_rows() -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(event="group_enriched").order_by("id"))


def clearbit_company() -> dict[str, Any]:
    text = resources.files("tracking_adapter.fixtures").joinpath("clearbit_company.json")
    return json.loads(text.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_saving_an_enriched_account_records_group_enriched_in_the_same_transaction(group_source):
    with transaction.atomic():
        account = make_account(
            "acct_9",
            name="Acme",
            domain="acme.test",
            industry="Software",
            employees=120,
            tags=["SaaS", "B2B"],
            enriched_at=ENRICHED_AT,
        )
    [row] = group_rows()
    assert (row.user_id, row.group_id, row.status) == (
        account.owner_tracking_id,
        "acct_9",
        Status.PENDING,
    )
    event = GroupEnrichedEvent.model_validate(row.payload)
    assert event.properties.enrichment_employees == 120
    assert event.properties.enrichment_tags == ["SaaS", "B2B"]
    assert event.timestamp == ENRICHED_AT
    entry = LedgerEntry.objects.get(event="group_enriched")
    assert (entry.subject_id, entry.message_id) == ("acct_9", row.message_id)


def test_an_unchanged_save_or_an_unmapped_change_records_nothing(group_source):
    account = make_account("acct_9", name="Acme", industry="Software")
    assert len(group_rows()) == 1
    account = Account.objects.get(pk=account.pk)
    account.save()
    account.clearbit = {"not": "mapped"}
    account.save()
    assert len(group_rows()) == 1
    account.employees = 130
    account.save()
    assert [r.payload["properties"]["enrichment_employees"] for r in group_rows()] == [None, 130]


def test_a_rolled_back_transaction_records_nothing(group_source):
    with pytest.raises(RuntimeError), transaction.atomic():
        make_account("acct_9", name="Acme")
        raise RuntimeError("the host's own failure")
    assert group_rows() == []
    assert not LedgerEntry.objects.filter(event="group_enriched").exists()


def test_a_user_and_an_account_with_the_same_id_never_share_a_ledger_entry(group_source):
    user_enriched.send(
        sender=None, user_id="same", group_id="acct_1", properties={"enrichment_city": "Pune"}
    )
    group_enriched.send(
        sender=None, group_id="same", user_id="u_1", properties={"enrichment_city": "Pune"}
    )
    # The same content again, for each: the ledger of each kind knows it.
    user_enriched.send(
        sender=None, user_id="same", group_id="acct_1", properties={"enrichment_city": "Pune"}
    )
    group_enriched.send(
        sender=None, group_id="same", user_id="u_2", properties={"enrichment_city": "Pune"}
    )
    entries = sorted(LedgerEntry.objects.values_list("event", "subject_id"))
    assert entries == [("group_enriched", "same"), ("user_enriched", "same")]
    kinds = sorted(OutboxEvent.objects.values_list("event", flat=True))
    assert kinds == ["group_enriched", "user_enriched"]


def test_the_attributed_user_is_not_content(group_source):
    """The same facts about an account are sent once, whoever triggered the enrichment."""
    for user_id in ("u_1", "u_2"):
        group_enriched.send(
            sender=None, group_id="acct_5", user_id=user_id, properties={"name": "Acme"}
        )
    assert [r.user_id for r in group_rows()] == ["u_1"]


def test_the_signal_with_a_company_preset(group_source):
    account = make_account("acct_cb")
    group_enriched.send(
        sender=Account, instance=account, provider="clearbit", payload=clearbit_company()
    )
    [row] = group_rows()[-1:]
    # Read back as the sink will (jsonb keeps its own key order).
    properties = GroupEnrichedEvent.model_validate(row.payload).to_thrivestack()["properties"]
    assert properties["enrichment_domain"]
    assert list(properties)[: len(GROUP_PROPERTY_NAMES)] == list(GROUP_PROPERTY_NAMES)
    assert row.group_id == "acct_cb"


def test_a_source_with_a_provider_preset_reads_the_company_payload(settings):
    settings.TRACKING_ADAPTER = tracking(
        SOURCES={
            "group_enriched": {
                "MODEL": "testapp.Account",
                "GROUP_ID": "external_id",
                "USER_ID": "owner_tracking_id",
                "PROVIDER": ["clearbit", "clearbit"],
            }
        }
    )
    make_account("acct_cb", clearbit=clearbit_company())
    [row] = group_rows()
    payload = clearbit_company()
    company = payload.get("company", payload)
    assert row.payload["properties"]["enrichment_name"] == company["name"]


def test_invalid_account_data_is_a_dead_row_naming_the_field(group_source):
    Account.objects.create(external_id="acct_orphan", name="No owner")  # USER_ID is None
    [row] = group_rows()
    assert row.status == Status.DEAD
    assert row.group_id == "acct_orphan"
    assert "user_id" in row.last_error
    assert "acct_orphan" not in LedgerEntry.objects.values_list("subject_id", flat=True)


def test_delivered_to_track_with_the_account_in_context(settings, receiver):
    settings.TRACKING_ADAPTER = {
        **thrivestack_to(receiver),
        "SOURCES": {"group_enriched": GROUP_SOURCE},
    }
    account = make_account("acct_9", name="Acme", employees=12, enriched_at=ENRICHED_AT)
    make_profile(account=account, city="Pune")

    stats = dispatch.drain()

    assert stats.delivered == 2
    items = {item["event_name"]: item for item in receiver.items}
    group = items["group_enriched"]
    assert group["user_id"] == account.owner_tracking_id
    assert group["context"] == {"group_id": "acct_9"}
    assert group["timestamp"] == "2024-10-20T15:51:35.059Z"
    assert group["properties"]["enrichment_employees"] == 12
    assert group["properties"]["enrichment_domain_aliases"] is None
    assert list(group["properties"]) == list(GROUP_PROPERTY_NAMES)
    assert items["user_enriched"]["properties"]["enrichment_city"] == "Pune"


def test_capture_events_sees_both_kinds_or_the_one_asked_for(group_source):
    with capture_events() as everything, capture_events("group_enriched") as groups:
        make_profile(account=make_account("acct_9", name="Acme"), city="Pune")
    assert sorted(type(e).__name__ for e in everything) == [
        "GroupEnrichedEvent",
        "UserEnrichedEvent",
    ]
    assert [type(e) for e in groups] == [GroupEnrichedEvent]
    assert OutboxEvent.objects.count() == 0


def run(command: str, *args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def bulk_accounts(count: int) -> list[Account]:
    """Accounts written without save(): no signal, so only a backfill sends them."""
    owner = User.objects.create(username="bulk-owner")
    return Account.objects.bulk_create(
        Account(external_id=f"acct_{n}", name=f"Company {n}", owner=owner, employees=n)
        for n in range(count)
    )


def test_backfill_group_enriched_sends_each_account_once(settings, receiver):
    settings.TRACKING_ADAPTER = {
        **thrivestack_to(receiver),
        "SOURCES": {"group_enriched": GROUP_SOURCE},
    }
    bulk_accounts(25)

    out, _err = run("backfill_group_enriched", "--batch-size", "10")
    assert "recorded:     25" in out
    assert receiver.item_count == 25
    assert {item["event_name"] for item in receiver.items} == {"group_enriched"}
    assert {item["context"]["group_id"] for item in receiver.items} == {
        f"acct_{n}" for n in range(25)
    }
    out, _err = run("backfill_group_enriched")
    assert "unchanged:    25" in out
    assert receiver.item_count == 25


def test_backfill_group_enriched_dry_run_and_group_id_filter(group_source):
    bulk_accounts(5)
    out, _err = run("backfill_group_enriched", "--dry-run", "--group-id", "acct_3")
    [line] = out.splitlines()
    item = json.loads(line)
    assert (item["event_name"], item["context"]["group_id"]) == ("group_enriched", "acct_3")
    assert OutboxEvent.objects.count() == 0


def test_backfill_group_enriched_without_its_source_names_the_setting(settings):
    settings.TRACKING_ADAPTER = tracking()
    with pytest.raises(CommandError, match=r"TRACKING_ADAPTER\['SOURCES'\]\['group_enriched'\]"):
        run("backfill_group_enriched")


def test_a_wrong_model_flag_is_blamed_on_the_flag(group_source):
    with pytest.raises(CommandError, match=r"--model: no installed model 'testapp.Nope'"):
        run("backfill_group_enriched", "--model", "testapp.Nope")
    with pytest.raises(CommandError, match=r"--model: no installed model 'testapp.Nope'"):
        run("backfill_user_enriched", "--model", "testapp.Nope")


def test_forget_group_enriched_erases_the_account_and_keeps_its_users(group_source):
    make_account("acct_9", name="Acme")
    make_account("acct_10", name="Other")
    user_enriched.send(
        sender=None, user_id="u_1", group_id="acct_9", properties={"enrichment_city": "Pune"}
    )
    out, _err = run("forget_group_enriched", "--dry-run", "acct_9")
    assert "would delete 1 outbox row(s) and 1 ledger entry for 1 account(s)" in out
    out, _err = run("forget_group_enriched", "acct_9")
    assert "deleted 1 outbox row(s) and 1 ledger entry" in out
    assert sorted(OutboxEvent.objects.values_list("event", "group_id")) == [
        ("group_enriched", "acct_10"),
        ("user_enriched", "acct_9"),
    ]
    assert not LedgerEntry.objects.filter(event="group_enriched", subject_id="acct_9").exists()


def test_tracking_status_and_reconcile_know_both_kinds(group_source):
    make_profile(account=make_account("acct_9", name="Acme"), city="Pune")
    out, _err = run("tracking_status", "--json")
    streams = {stream["event"] for stream in json.loads(out)["streams"]}
    assert streams == {"group_enriched", "user_enriched"}
    out, _err = run("reconcile_user_enriched")
    assert "reconcile group_enriched finished" in out
    assert "reconcile user_enriched finished" in out


def test_a_built_event_round_trips_through_the_outbox(group_source):
    account = make_account("acct_9", name="Acme", tags="one tag")
    [claimed] = dispatch.claim(10)
    assert claimed.event == "group_enriched"
    event = GroupEnrichedEvent.model_validate(claimed.payload)
    assert event.group_id == account.external_id
    assert event.properties.enrichment_tags == ["one tag"]
    assert not isinstance(event, UserEnrichedEvent)


# -- checks ---------------------------------------------------------------------------------


def serious(settings: Any, config: dict[str, Any]) -> list[tuple[str, str]]:
    settings.TRACKING_ADAPTER = config
    return [(m.id or "", m.msg) for m in check_settings() if m.is_serious()]


def test_a_valid_group_source_passes_the_checks(settings):
    assert serious(settings, with_group_source()) == []


def test_sources_naming_an_unknown_event_is_e021(settings):
    [(id_, msg)] = serious(settings, tracking(SOURCES={"grup_enriched": GROUP_SOURCE}))
    assert id_ == "tracking_adapter.E021"
    assert "'grup_enriched'" in msg


def test_source_and_sources_user_enriched_at_once_is_e021(settings):
    config = tracking()
    config["SOURCES"] = {"user_enriched": config["SOURCE"]}
    [(id_, msg)] = serious(settings, config)
    assert id_ == "tracking_adapter.E021"
    assert "both set" in msg


def test_a_user_property_in_a_group_source_is_e014_naming_the_event(settings):
    config = with_group_source(PROPERTIES={"enrichment_first_name": "name"})
    [(id_, msg)] = serious(settings, config)
    assert id_ == "tracking_adapter.E014"
    assert "43 properties of group_enriched" in msg
    assert "['SOURCES']['group_enriched']['PROPERTIES']" in msg


def test_a_path_that_does_not_resolve_in_a_group_source_is_e015(settings):
    [(id_, msg)] = serious(settings, with_group_source(GROUP_ID="external_idd"))
    assert id_ == "tracking_adapter.E015"
    assert "['SOURCES']['group_enriched']['GROUP_ID']" in msg


def test_forgetting_a_user_lets_their_accounts_facts_be_recorded_again(group_source):
    """Erasing the user an account's event was attributed to must not leave the account's
    ledger entry saying that content was sent."""
    account = make_account("acct_9", name="Acme")
    owner = account.owner_tracking_id
    assert owner is not None
    out, _err = run("forget_user_enriched", owner)
    assert "deleted 1 outbox row(s) and 1 ledger entry" in out
    assert group_rows() == []
    assert not LedgerEntry.objects.filter(event="group_enriched").exists()
    account.owner = User.objects.create(username="new-owner")
    account.save()
    out, _err = run("reconcile_user_enriched", "--event", "group_enriched")
    [row] = group_rows()
    assert row.user_id == account.owner_tracking_id

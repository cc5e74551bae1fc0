"""``make demo``: the whole path on embedded defaults, offline.

Migrates a fresh SQLite database, starts a ThriveStack-shaped receiver on loopback, creates
users and their accounts, enriches the users (``user_enriched``) and the accounts
(``group_enriched``) from bundled Clearbit/Apollo/PDL-style payloads, lets the outbox worker
deliver, then shows that unchanged saves send nothing and changes send exactly one event.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from tracking_adapter.receiver import LoopbackReceiver

USERS = 24
ACCOUNTS = 3  # one per provider
DEMO_KEY = "demo-api-key"


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="tracking-adapter-demo-"))
    with LoopbackReceiver(api_key=DEMO_KEY) as receiver:
        os.environ.update(
            DJANGO_SETTINGS_MODULE="example_project.settings",
            EXAMPLE_DB=str(workdir / "demo.sqlite3"),
            TRACKING_ENDPOINT=receiver.thrivestack_endpoint,
            THRIVESTACK_API_KEY=DEMO_KEY,
            TRACKING_DISPATCH="worker",
        )
        import django

        django.setup()
        return run(receiver)


def run(receiver: LoopbackReceiver) -> int:
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from django_app.models import OutboxEvent, Status
    from example_project.profiles.enrichment import (
        PROVIDERS,
        enrich,
        enrich_account,
        fake_lookup,
        fixture,
    )
    from example_project.profiles.models import Account, Profile

    call_command("migrate", verbosity=0)
    print(f"1. migrated a fresh SQLite database; receiver listening on {receiver.url}/api/track")

    users = [
        User.objects.create(username=f"user_{number:03d}", email=f"user{number}@example.com")
        for number in range(USERS)
    ]
    accounts = [
        Account.objects.create(
            external_id=f"acct_{n}", name=f"Account {n}", owner=users[n], plan="Growth"
        )
        for n in range(ACCOUNTS)
    ]
    profiles = [
        Profile.objects.create(user=user, account=accounts[number % ACCOUNTS])
        for number, user in enumerate(users)
    ]
    print(
        f"2. created {USERS} users with blank profiles and {ACCOUNTS} accounts with a name and "
        f"a plan: {OutboxEvent.objects.count()} events (group_enriched: a name is news)"
    )

    for number, profile in enumerate(profiles):
        provider = PROVIDERS[number % len(PROVIDERS)]
        enrich(profile, provider, fake_lookup(provider, number))
    for account, provider in zip(accounts, PROVIDERS, strict=True):
        enrich_account(account, provider, fixture(provider, "company"))
    recorded = OutboxEvent.objects.count()
    print(
        "3. enriched users and accounts from offline Clearbit/Apollo/PDL payloads: "
        f"{recorded} events in the outbox "
        f"({OutboxEvent.objects.filter(event='group_enriched').count()} group_enriched)"
    )

    call_command("deliver_events", "--once", verbosity=0)
    delivered = OutboxEvent.objects.filter(status=Status.DELIVERED).count()
    print(f"4. the worker delivered {delivered} events in {receiver.request_count} request(s)")

    for profile in profiles[:5]:
        profile.last_login_ip = "127.0.0.1"  # not an enrichment field
        profile.save()
    profiles[0].title = "VP Engineering"
    profiles[0].save()
    call_command("deliver_events", "--once", verbosity=0)
    print(
        "5. saved 5 profiles without enrichment changes and changed one title: "
        f"{OutboxEvent.objects.count() - recorded} new event(s), "
        f"{receiver.item_count} delivered in all"
    )

    problems = [item for item in receiver.items if _invalid(item)]
    pending = OutboxEvent.objects.exclude(status=Status.DELIVERED).count()
    print(
        f"\nsummary: {USERS} users, {ACCOUNTS} accounts, {OutboxEvent.objects.count()} events "
        f"recorded, {receiver.item_count} received by /track, {pending} not delivered, "
        f"{receiver.duplicate_count} duplicates, {len(problems)} invalid"
    )
    for kind in ("user_enriched", "group_enriched"):
        last = next(item for item in reversed(receiver.items) if item["event_name"] == kind)
        print(f"\none {kind} event as /track received it:")
        print(json.dumps(last, indent=2))
    return 0 if not problems and not pending and receiver.duplicate_count == 0 else 1


def _invalid(item: dict) -> bool:
    from tracking_adapter import event_type

    try:
        event_type(item["event_name"]).model_validate(item)
    except ValueError:
        return True
    return False


if __name__ == "__main__":
    sys.exit(main())

"""``make demo``: the whole path on embedded defaults, offline.

Migrates a fresh SQLite database, starts a ThriveStack-shaped receiver on loopback, creates
users, enriches them from bundled Clearbit/Apollo/PDL-style payloads, lets the outbox worker
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
    from example_project.profiles.enrichment import PROVIDERS, enrich, fake_lookup
    from example_project.profiles.models import Account, Profile
    from tracking_adapter import UserEnrichedEvent

    call_command("migrate", verbosity=0)
    print(f"1. migrated a fresh SQLite database; receiver listening on {receiver.url}/api/track")

    accounts = [
        Account.objects.create(external_id=f"acct_{n}", name=f"Account {n}") for n in range(3)
    ]
    profiles = []
    for number in range(USERS):
        user = User.objects.create(username=f"user_{number:03d}", email=f"user{number}@example.com")
        profiles.append(Profile.objects.create(user=user, account=accounts[number % 3]))
    print(f"2. created {USERS} users with blank profiles: {OutboxEvent.objects.count()} events")

    for number, profile in enumerate(profiles):
        provider = PROVIDERS[number % len(PROVIDERS)]
        enrich(profile, provider, fake_lookup(provider, number))
    recorded = OutboxEvent.objects.count()
    print(
        f"3. enriched them from offline Clearbit/Apollo/PDL payloads: {recorded} events in the outbox"
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

    problems = [item for item in receiver.items if _invalid(UserEnrichedEvent, item)]
    pending = OutboxEvent.objects.exclude(status=Status.DELIVERED).count()
    print(
        f"\nsummary: {USERS} users, {OutboxEvent.objects.count()} events recorded, "
        f"{receiver.item_count} received by /track, {pending} not delivered, "
        f"{receiver.duplicate_count} duplicates, {len(problems)} invalid"
    )
    print("\none event as /track received it:")
    print(json.dumps(receiver.items[-1], indent=2))
    return 0 if not problems and not pending and receiver.duplicate_count == 0 else 1


def _invalid(model: type, item: dict) -> bool:
    try:
        model.model_validate(item)  # type: ignore[attr-defined]
    except ValueError:
        return True
    return False


if __name__ == "__main__":
    sys.exit(main())

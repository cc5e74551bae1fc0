"""Seed N enriched profiles, as an existing customer would have them before installing the app."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import User
from django.db import DatabaseError, connection, transaction

from example_project.profiles.models import Account, Profile

CITIES = [
    ("Pune", "Maharashtra", "India", "IN", "Asia/Kolkata"),
    ("Berlin", "Berlin", "Germany", "DE", "Europe/Berlin"),
    ("Austin", "Texas", "United States", "US", "America/Chicago"),
    ("Lyon", "Auvergne-Rhône-Alpes", "France", "FR", "Europe/Paris"),
    ("São Paulo", "São Paulo", "Brazil", "BR", "America/Sao_Paulo"),
]
COMPANIES = [("ThriveStack", "thrivestack.ai"), ("Acme", "acme.test"), ("Initech", "initech.test")]
TITLES = ["Software Engineer", "Head of Growth", "CTO", "Product Manager", "Data Analyst"]
BASE = datetime(2024, 1, 1, tzinfo=UTC)
CHUNK = 5000


def profile_fields(number: int, rng: random.Random) -> dict[str, object]:
    city, state, country, code, zone = CITIES[number % len(CITIES)]
    company, domain = COMPANIES[number % len(COMPANIES)]
    first, last = f"First{number}", f"Last{number % 997}"
    return {
        "first_name": first,
        "last_name": last,
        "full_name": f"{first} {last}",
        "avatar": f"https://avatars.example.test/{number}.png",
        "city": city,
        "state": state,
        "country": country,
        "country_code": code,
        "time_zone": zone,
        "company": company,
        "company_domain": domain,
        "title": rng.choice(TITLES),
        "seniority": rng.choice(["junior", "senior", "manager", "executive"]),
        "linkedin": f"https://www.linkedin.com/in/person-{number}",
        "phones": [f"+1555{number:07d}"],
        "enrichment_provider": "Clearbit",
        "enriched_at": BASE + timedelta(minutes=number),
    }


def reset(count: int) -> None:
    """Exactly ``count`` profiles and an empty outbox and ledger."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM profiles_profile")
        existing = cursor.fetchone()[0]
    if existing != count:
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE profiles_profile, profiles_account, auth_user RESTART IDENTITY CASCADE"
            )
        seed(count)
    clear_outbox()


def clear_outbox() -> None:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE django_app_outboxevent, django_app_ledgerentry RESTART IDENTITY")


def checkpoint() -> None:
    """Write out what the previous contender left dirty, so the next one does not pay for
    it (CHECKPOINT needs a superuser or pg_checkpoint; without either, nothing is done)."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("CHECKPOINT")
    except DatabaseError:
        pass


def server_cpu_seconds() -> float | None:
    """CPU seconds the PostgreSQL server has used so far on this machine: the postmaster, its
    live processes (backends, WAL writer, checkpointer) and the backends that have exited
    (reaped by the postmaster, their time is in its children's counts). None when the
    server is not a process here whose ``/proc`` entries can be read (another host)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()
    try:
        postmaster = int(_stat(backend)[1])  # the backend's parent
        with open(f"/proc/{postmaster}/task/{postmaster}/children") as children:
            live = [int(pid) for pid in children.read().split()]
        ticks = sum(int(value) for value in _stat(postmaster)[11:15])  # own and reaped
        for pid in live:
            try:
                ticks += sum(int(value) for value in _stat(pid)[11:13])
            except OSError:
                continue  # exited meanwhile: now in the postmaster's children's counts
    except (OSError, ValueError, IndexError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name, from the state on."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def seed(count: int) -> None:
    rng = random.Random(42)
    accounts = Account.objects.bulk_create(
        [Account(external_id=f"acct_{n}", name=f"Account {n}") for n in range(100)]
    )
    for start in range(0, count, CHUNK):
        numbers = range(start, min(count, start + CHUNK))
        with transaction.atomic():
            users = User.objects.bulk_create([User(username=f"user_{n:07d}") for n in numbers])
            Profile.objects.bulk_create(
                [
                    Profile(
                        user=user, account=accounts[n % len(accounts)], **profile_fields(n, rng)
                    )
                    for n, user in zip(numbers, users, strict=True)
                ]
            )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

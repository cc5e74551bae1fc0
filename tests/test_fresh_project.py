"""Acceptance: the app in a brand-new Django project, set up the way the README says."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI, reachable
from tracking_adapter.receiver import LoopbackReceiver

# The databases and drivers a host project may run on: each gets a fresh database that the
# new project migrates, saves to and delivers from. SQLite is startproject's own default.
DATABASE_SETTINGS = {
    "postgresql-psycopg3": (
        "DATABASES = {{'default': {{'ENGINE': 'django.db.backends.postgresql', "
        "'HOST': '127.0.0.1', 'PORT': 5432, 'USER': 'postgres', 'NAME': '{name}'}}}}\n"
    ),
    "postgresql-psycopg2": (
        # The host has psycopg2 only: psycopg 3 must not be importable.
        "import sys\nsys.modules['psycopg'] = None\n"
        "DATABASES = {{'default': {{'ENGINE': 'django.db.backends.postgresql', "
        "'HOST': '127.0.0.1', 'PORT': 5432, 'USER': 'postgres', 'NAME': '{name}'}}}}\n"
    ),
    "mariadb-mysqlclient": (
        "DATABASES = {{'default': {{'ENGINE': 'django.db.backends.mysql', "
        "'HOST': '127.0.0.1', 'PORT': 3306, 'USER': 'root', 'PASSWORD': '', "
        "'NAME': '{name}', 'OPTIONS': {{'charset': 'utf8mb4'}}}}}}\n"
    ),
}
SERVERS = {"postgresql-psycopg3": 5432, "postgresql-psycopg2": 5432, "mariadb-mysqlclient": 3306}

MODELS = """
from django.db import models


class Profile(models.Model):
    user_id = models.CharField(max_length=50, unique=True)
    account_id = models.CharField(max_length=50)
    city = models.CharField(max_length=100, blank=True)
    company = models.CharField(max_length=100, blank=True)

    def __str__(self):
        return self.user_id
"""

SETTINGS = """
INSTALLED_APPS += ["django_app", "accounts"]
TRACKING_ADAPTER = {{
    "SINK": "thrivestack",
    "SINK_OPTIONS": {{"api_key": "fresh-key", "endpoint": "{endpoint}"}},
    "DISPATCH": "inline",
    "SOURCE": {{
        "MODEL": "accounts.Profile",
        "USER_ID": "user_id",
        "GROUP_ID": "account_id",
        "PROPERTIES": {{"{city_property}": "city", "enrichment_employment_name": "company"}},
    }},
}}
"""

SCRIPT = """
import django
django.setup()
from django.db import transaction
from accounts.models import Profile

profile = Profile.objects.create(user_id="user_123", account_id="account_123")
profile.city = "Pune"
profile.company = "ThriveStack"
profile.save()                      # changed enrichment data: one event
profile.save()                      # unchanged: nothing
try:
    with transaction.atomic():
        profile.city = "Mumbai"
        profile.save()
        raise RuntimeError("rolled back")
except RuntimeError:
    pass

from django.db import connection
print("driver:", type(connection.connection).__module__.split(".")[0])
"""


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    result = run(
        [sys.executable, "-m", "django", "startproject", "site_", str(tmp_path)],
        tmp_path,
        dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    app = tmp_path / "accounts"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "models.py").write_text(MODELS)
    return tmp_path


def driver_missing(database: str) -> str | None:
    module = {"postgresql-psycopg3": "psycopg", "postgresql-psycopg2": "psycopg2"}.get(
        database, "MySQLdb"
    )
    try:
        __import__(module)
    except ImportError:
        return f"{module} is not installed (make test installs it)"
    return None


def sql(database: str, statement: str) -> None:
    if database.startswith("mariadb"):
        command = ["mariadb", "-h", "127.0.0.1", "-u", "root", "-e", statement]
    else:
        command = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-c", statement]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


@pytest.fixture(params=["sqlite", *DATABASE_SETTINGS])
def database(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(kind, settings lines) of a fresh database for the new project, dropped afterwards."""
    kind = request.param
    if kind == "sqlite":
        yield kind, ""
        return
    problem = None
    if not reachable("127.0.0.1", SERVERS[kind]):
        problem = f"no server on 127.0.0.1:{SERVERS[kind]}"
    elif shutil.which("mariadb" if kind.startswith("mariadb") else "psql") is None:
        problem = "its command-line client is not installed"
    else:
        problem = driver_missing(kind)
    if problem:
        if IN_CI:
            pytest.fail(f"{kind}: {problem} (required under CI=true)")
        pytest.skip(f"{kind}: {problem}")
    name = f"fresh_{uuid.uuid4().hex[:12]}"
    sql(kind, f"CREATE DATABASE {name}")
    try:
        yield kind, DATABASE_SETTINGS[kind].format(name=name)
    finally:
        sql(kind, f"DROP DATABASE IF EXISTS {name}")


def configure(
    project: Path, endpoint: str, city_property: str, database: str = ""
) -> dict[str, str]:
    settings = project / "site_" / "settings.py"
    with settings.open("a") as handle:
        handle.write(SETTINGS.format(endpoint=endpoint, city_property=city_property))
        handle.write(database)
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(DJANGO_SETTINGS_MODULE="site_.settings", PYTHONPATH=str(project))
    return env


def test_a_new_project_sends_exactly_one_event_per_committed_change(project, database):
    kind, database_settings = database
    with LoopbackReceiver(api_key="fresh-key") as receiver:
        env = configure(
            project, receiver.thrivestack_endpoint, "enrichment_city", database_settings
        )
        for command in (
            ["makemigrations", "accounts"],
            ["migrate"],
            ["check", "--database", "default"],  # with the database's own model checks
        ):
            result = run([sys.executable, "manage.py", *command], project, env)
            assert result.returncode == 0, result.stderr + result.stdout
            assert "WARNINGS" not in result.stderr, result.stderr
        result = run([sys.executable, "-c", textwrap.dedent(SCRIPT)], project, env)
        assert result.returncode == 0, result.stderr
        driver = {
            "sqlite": "sqlite3",
            "postgresql-psycopg3": "psycopg",
            "postgresql-psycopg2": "psycopg2",
            "mariadb-mysqlclient": "MySQLdb",
        }[kind]
        assert f"driver: {driver}" in result.stdout, result.stdout
        assert receiver.item_count == 1

        # Never resent: neither by a worker nor by a backfill of every user.
        for command in (["deliver_events", "--once"], ["backfill_user_enriched"]):
            result = run([sys.executable, "manage.py", *command], project, env)
            assert result.returncode == 0, result.stderr + result.stdout
        assert receiver.item_count == 1, (kind, receiver.items)
        [item] = receiver.items
    assert item["event_name"] == "user_enriched"
    assert item["user_id"] == "user_123"
    assert item["context"] == {"group_id": "account_123"}
    assert item["properties"]["enrichment_city"] == "Pune"
    assert item["properties"]["enrichment_employment_name"] == "ThriveStack"
    spec_sample = json.loads(
        (Path(__file__).parent / "core" / "data" / "spec_sample_1.json").read_text()
    )
    assert list(item) == ["user_id", "event_name", "properties", "context", "timestamp"]
    assert list(item["properties"]) == list(spec_sample["properties"])


def test_check_flags_a_misspelled_property_name(project):
    env = configure(project, "http://127.0.0.1:9/api", "enrichment_citty")
    result = run([sys.executable, "manage.py", "check"], project, env)
    assert result.returncode != 0
    assert "tracking_adapter.E014" in result.stderr
    assert "enrichment_citty" in result.stderr
    assert "Did you mean 'enrichment_city'?" in result.stderr

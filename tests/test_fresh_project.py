"""Acceptance: the app in a brand-new Django project, set up the way the README says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tracking_adapter.receiver import LoopbackReceiver

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


def configure(project: Path, endpoint: str, city_property: str) -> dict[str, str]:
    settings = project / "site_" / "settings.py"
    with settings.open("a") as handle:
        handle.write(SETTINGS.format(endpoint=endpoint, city_property=city_property))
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(DJANGO_SETTINGS_MODULE="site_.settings", PYTHONPATH=str(project))
    return env


def test_a_new_project_sends_exactly_one_event_per_committed_change(project):
    with LoopbackReceiver(api_key="fresh-key") as receiver:
        env = configure(project, receiver.thrivestack_endpoint, "enrichment_city")
        for command in (["makemigrations", "accounts"], ["migrate"], ["check"]):
            result = run([sys.executable, "manage.py", *command], project, env)
            assert result.returncode == 0, result.stderr + result.stdout
        result = run([sys.executable, "-c", textwrap.dedent(SCRIPT)], project, env)
        assert result.returncode == 0, result.stderr

        assert receiver.item_count == 1
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

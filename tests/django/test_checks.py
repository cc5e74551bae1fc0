"""``manage.py check`` for TRACKING_ADAPTER: stable ids, useful hints, and saves that never break."""

from __future__ import annotations

import copy
import io
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from django_app.checks import check_settings
from django_app.models import OutboxEvent
from tests.testapp.models import Account, Profile

BASE: dict[str, Any] = copy.deepcopy(django_settings.TRACKING_ADAPTER)


def config(**changes: Any) -> dict[str, Any]:
    """The test settings' TRACKING_ADAPTER with top-level keys replaced (None removes one)."""
    result = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def source(**changes: Any) -> dict[str, Any]:
    """The test settings' SOURCE with keys replaced (None removes one)."""
    result = copy.deepcopy(BASE["SOURCE"])
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def errors_for(settings: Any, value: Any) -> list[checks.CheckMessage]:
    settings.TRACKING_ADAPTER = value
    return [m for m in check_settings() if m.is_serious()]


def only(messages: list[checks.CheckMessage], id_: str) -> checks.CheckMessage:
    ids = [m.id for m in messages]
    assert ids == [id_], [(m.id, m.msg) for m in messages]
    return messages[0]


# -- the valid configuration ------------------------------------------------------------------


def test_test_settings_are_valid() -> None:
    assert check_settings() == []


def test_manage_py_check_passes_with_valid_settings() -> None:
    call_command("check", stdout=io.StringIO(), stderr=io.StringIO())


def test_no_setting_at_all_is_fine(settings: Any) -> None:
    del settings.TRACKING_ADAPTER
    assert check_settings() == []


def test_manage_py_check_fails_with_the_stable_id(settings: Any) -> None:
    settings.TRACKING_ADAPTER = config(DISPATCH="sometimes")
    with pytest.raises(SystemCheckError, match=r"tracking_adapter\.E007"):
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())


def test_registered_check_is_tagged_for_manage_py_check(settings: Any) -> None:
    settings.TRACKING_ADAPTER = config(SINK="thrivestak")
    found = [m.id for m in checks.run_checks() if m.id and m.id.startswith("tracking_adapter.")]
    assert found == ["tracking_adapter.E003"]


def test_not_a_dict_is_e001(settings: Any) -> None:
    only(errors_for(settings, ["SINK", "memory"]), "tracking_adapter.E001")


# -- top level ----------------------------------------------------------------------------------


def test_unknown_top_level_key_with_did_you_mean(settings: Any) -> None:
    value = config()
    value["SINK_OPTION"] = {}
    message = only(errors_for(settings, value), "tracking_adapter.E002")
    assert "SINK_OPTION" in message.msg
    assert "'SINK_OPTIONS'" in (message.hint or "")


def test_unknown_sink_alias_suggests_the_right_one(settings: Any) -> None:
    message = only(errors_for(settings, config(SINK="thrivestak")), "tracking_adapter.E003")
    assert "thrivestak" in message.msg
    assert "'thrivestack'" in (message.hint or "")


def test_unimportable_sink_path(settings: Any) -> None:
    value = config(SINK="no_such_module_here.sinks.WarehouseSink")
    message = only(errors_for(settings, value), "tracking_adapter.E003")
    assert "no_such_module_here" in message.msg


def test_dotted_path_that_is_not_a_sink(settings: Any) -> None:
    message = only(
        errors_for(settings, config(SINK="collections.OrderedDict")), "tracking_adapter.E003"
    )
    assert "not a Sink subclass" in message.msg


def test_dotted_path_to_a_real_sink_is_fine(settings: Any) -> None:
    assert errors_for(settings, config(SINK="tracking_adapter.sinks.local.MemorySink")) == []


def test_thrivestack_without_api_key(settings: Any) -> None:
    value = config(SINK="thrivestack", SINK_OPTIONS={"endpoint": "https://api.example.com/api"})
    message = only(errors_for(settings, value), "tracking_adapter.E005")
    assert "api_key" in message.msg


def test_segment_without_write_key(settings: Any) -> None:
    only(errors_for(settings, config(SINK="segment", SINK_OPTIONS={})), "tracking_adapter.E005")


@pytest.mark.parametrize(
    ("sink", "key_option"), [("thrivestack", "api_key"), ("segment", "write_key")]
)
def test_a_key_with_a_trailing_newline_is_caught_before_any_event_waits_on_it(
    settings: Any, sink: str, key_option: str
) -> None:
    value = config(SINK=sink, SINK_OPTIONS={key_option: "sk_live_abcdef123456\n"})
    message = only(errors_for(settings, value), "tracking_adapter.E019")
    assert key_option in message.msg
    assert "sk_live_abcdef123456" not in message.msg + (message.hint or "")
    assert "strip" in (message.hint or "")


@pytest.mark.parametrize(
    ("sink", "options", "route"),
    [
        (
            "thrivestack",
            {"api_key": "k", "endpoint": "https://api.app.thrivestack.ai/api/track"},
            "/track",
        ),
        (
            "thrivestack",
            {"api_key": "k", "endpoint": "https://api.app.thrivestack.ai/api/track/"},
            "/track",
        ),
        ("segment", {"write_key": "w", "host": "https://api.segment.io/v1/batch"}, "/v1/batch"),
    ],
)
def test_an_endpoint_that_already_ends_in_the_route_is_e022(
    settings: Any, sink: str, options: dict[str, str], route: str
) -> None:
    message = only(
        errors_for(settings, config(SINK=sink, SINK_OPTIONS=options)), "tracking_adapter.E022"
    )
    assert f"the sink appends {route}" in message.msg
    assert f"Drop the trailing {route}" in (message.hint or "")


def test_the_base_url_is_not_e022(settings: Any) -> None:
    value = config(
        SINK="thrivestack",
        SINK_OPTIONS={"api_key": "k", "endpoint": "https://api.app.thrivestack.ai/api"},
    )
    assert errors_for(settings, value) == []


def test_http_endpoint_off_loopback(settings: Any) -> None:
    value = config(
        SINK="thrivestack",
        SINK_OPTIONS={"api_key": "sk-check-123456", "endpoint": "http://api.example.com/api"},
    )
    message = only(errors_for(settings, value), "tracking_adapter.E006")
    assert "endpoint" in message.msg
    assert "sk-check-123456" not in message.msg


@pytest.mark.parametrize(
    "endpoint",
    ["http://127.0.0.1:9/api", "http://localhost:9/api", "https://api.example.com/api"],
)
def test_loopback_http_and_remote_https_endpoints_are_fine(settings: Any, endpoint: str) -> None:
    value = config(SINK="thrivestack", SINK_OPTIONS={"api_key": "k-123456", "endpoint": endpoint})
    assert errors_for(settings, value) == []


def test_http_off_loopback_is_fine_when_explicitly_allowed(settings: Any) -> None:
    options = {"api_key": "k-123456", "endpoint": "http://api.example.com/api", "allow_http": True}
    assert errors_for(settings, config(SINK="thrivestack", SINK_OPTIONS=options)) == []


def test_sink_option_the_sink_does_not_take_is_e004(settings: Any) -> None:
    value = config(SINK="memory", SINK_OPTIONS={"colour": "blue"})
    message = only(errors_for(settings, value), "tracking_adapter.E004")
    assert "SINK_OPTIONS" in message.msg


@pytest.mark.parametrize("mode", ["workers", "sync", None, 3])
def test_bad_dispatch(settings: Any, mode: Any) -> None:
    value = config()
    value["DISPATCH"] = mode
    message = only(errors_for(settings, value), "tracking_adapter.E007")
    if mode == "workers":
        assert "'worker'" in (message.hint or "")


@pytest.mark.parametrize("mode", ["inline", "worker"])
def test_good_dispatch(settings: Any, mode: str) -> None:
    assert errors_for(settings, config(DISPATCH=mode)) == []


# -- DISPATCH "celery": an app of the project's own takes the task ------------------------------

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_celery_app(monkeypatch: pytest.MonkeyPatch) -> Any:
    """This process as if no Celery app had been created (restored afterwards)."""
    from celery import _state

    monkeypatch.setattr(_state._tls, "current_app", None)
    monkeypatch.setattr(_state, "default_app", None)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    return _state


def celery_messages(settings: Any, **changes: Any) -> list[checks.CheckMessage]:
    settings.TRACKING_ADAPTER = config(DISPATCH="celery", **changes)
    return check_settings()


def test_celery_without_an_app_is_w001_with_the_bootstrap_and_creates_no_app(
    settings: Any, no_celery_app: Any
) -> None:
    message = only(celery_messages(settings), "tracking_adapter.W001")
    assert not message.is_serious()  # a warning: manage.py check still passes
    assert "fallback" in message.msg
    hint = message.hint or ""
    assert "tests/celery.py" in hint  # named after the settings' package (tests.settings)
    assert 'app.config_from_object("django.conf:settings", namespace="CELERY")' in hint
    assert "from .celery import app as celery_app" in hint
    # celery.current_app would have made up the fallback app; the check does not.
    assert no_celery_app.default_app is None
    assert no_celery_app._tls.current_app is None


def test_celery_fallback_app_is_w001(settings: Any, no_celery_app: Any) -> None:
    from django_app.checks import is_celery_fallback_app

    fallback = no_celery_app.get_current_app()  # what a task sent now would go through
    assert is_celery_fallback_app(fallback)
    only(celery_messages(settings), "tracking_adapter.W001")


def test_celery_with_the_projects_app_passes(settings: Any, no_celery_app: Any) -> None:
    import tests.celery_app  # the usual bootstrap: an app made current and default

    no_celery_app.default_app = tests.celery_app.app  # as on its first import
    assert celery_messages(settings) == []
    assert celery_messages(settings, CELERY_QUEUE="tracking") == []


def celery_app_without_broker(**conf: Any) -> Any:
    from celery import Celery

    app = Celery("proj", set_as_current=False, fixups=[])  # fixups: never made the default
    app.conf.update(conf)
    return app


def test_celery_app_without_a_broker_is_w002(settings: Any, no_celery_app: Any) -> None:
    no_celery_app.default_app = celery_app_without_broker()
    message = only(celery_messages(settings), "tracking_adapter.W002")
    assert "'proj'" in message.msg
    assert "amqp://guest@localhost//" in message.msg
    assert "CELERY_BROKER_URL" in (message.hint or "")


def test_celery_broker_from_the_environment_or_an_eager_app_passes(
    settings: Any, no_celery_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_celery_app.default_app = celery_app_without_broker(task_always_eager=True)
    assert celery_messages(settings) == []
    no_celery_app.default_app = celery_app_without_broker()
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    assert celery_messages(settings) == []


def test_celery_app_whose_configuration_fails_is_w002(settings: Any, no_celery_app: Any) -> None:
    app = celery_app_without_broker()
    app.config_from_object("tests.no_such_celery_config")  # read lazily: fails on first use
    no_celery_app.default_app = app
    message = only(celery_messages(settings), "tracking_adapter.W002")
    assert "no_such_celery_config" in message.msg


def readme_block(marker: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if marker in b]
    return textwrap.dedent(block)


def manage_py_check(tmp_path: Path, *, bootstrap: bool, broker: bool) -> str:
    """``manage.py check`` in a new process of a project ``proj`` set up as the README says
    (its celery.py and settings blocks), with or without the import in proj/__init__.py and
    the broker URL."""
    package = tmp_path / "proj"
    package.mkdir()
    (package / "celery.py").write_text(readme_block("# proj/celery.py"))
    (package / "__init__.py").write_text(
        readme_block("# proj/__init__.py") if bootstrap else '"""No Celery bootstrap."""\n'
    )
    celery_settings = readme_block("CELERY_BEAT_SCHEDULE")
    if not broker:
        celery_settings = re.sub(r"(?m)^CELERY_BROKER_URL = .*$", "", celery_settings)
    (package / "settings.py").write_text("from tests.settings import *\n\n" + celery_settings)
    env = {key: value for key, value in os.environ.items() if key != "CELERY_BROKER_URL"}
    env.update(
        DJANGO_SETTINGS_MODULE="proj.settings",
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]),
    )
    result = subprocess.run(
        [sys.executable, "-m", "django", "check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr  # warnings never fail the check
    return result.stdout + result.stderr


def test_manage_py_check_passes_for_the_readme_celery_setup(tmp_path: Path) -> None:
    output = manage_py_check(tmp_path, bootstrap=True, broker=True)
    assert "System check identified no issues" in output, output


def test_manage_py_check_warns_w001_when_the_celery_app_is_never_imported(
    tmp_path: Path,
) -> None:
    output = manage_py_check(tmp_path, bootstrap=False, broker=True)
    assert "tracking_adapter.W001" in output, output
    assert "Create proj/celery.py" in output
    assert "tracking_adapter.W002" not in output


def test_manage_py_check_warns_w002_without_a_broker_url(tmp_path: Path) -> None:
    output = manage_py_check(tmp_path, bootstrap=True, broker=False)
    assert "tracking_adapter.W002" in output, output
    assert "tracking_adapter.W001" not in output


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("BATCH_SIZE", 0),
        ("BATCH_SIZE", -5),
        ("BATCH_SIZE", "500"),
        ("BATCH_SIZE", True),
        ("LEASE_SECONDS", None),
        ("EXCLUDE_PROPERTIES", "enrichment_city"),
        ("RETRY", {"MAX_ATEMPTS": 3}),
        ("NUDGE_TIMEOUT", -0.1),
        ("NUDGE_TIMEOUT", 30),
        ("NUDGE_TIMEOUT", "0.1"),
        ("NUDGE_TIMEOUT", float("nan")),
    ],
)
def test_malformed_tuning_is_e018(settings: Any, key: str, value: Any) -> None:
    full = config()
    full[key] = value
    message = only(errors_for(settings, full), "tracking_adapter.E018")
    assert key in message.msg
    if key == "RETRY":
        assert "'MAX_ATTEMPTS'" in (message.hint or "")


def test_good_tuning_passes(settings: Any) -> None:
    value = config(
        BATCH_SIZE=100,
        LEASE_SECONDS=30,
        INLINE_TIMEOUT=0.5,
        EXCLUDE_PROPERTIES=["enrichment_city"],
        RETRY={"MAX_ATTEMPTS": 3, "BASE_DELAY": 1},
        NUDGE_TIMEOUT=0,
    )
    assert errors_for(settings, value) == []


def remote(lease: float, **options: Any) -> dict[str, Any]:
    return config(
        SINK="thrivestack",
        SINK_OPTIONS={"api_key": "k", "endpoint": "http://127.0.0.1:9/api", **options},
        LEASE_SECONDS=lease,
    )


def test_a_lease_shorter_than_two_request_deadlines_is_e020(settings: Any) -> None:
    message = only(errors_for(settings, remote(40, deadline=30)), "tracking_adapter.E020")
    assert "LEASE_SECONDS" in message.msg
    assert "30s" in message.msg
    assert "at least 60" in (message.hint or "")
    message = only(errors_for(settings, remote(50)), "tracking_adapter.E020")  # default 30 s
    assert "deadline" in message.msg


def test_a_lease_with_room_for_a_request_passes(settings: Any) -> None:
    assert errors_for(settings, remote(60, deadline=30)) == []
    assert errors_for(settings, remote(10, deadline=4)) == []
    assert errors_for(settings, remote(120)) == []  # the defaults


# -- SOURCE ---------------------------------------------------------------------------------


def test_source_unknown_key(settings: Any) -> None:
    value = config(SOURCE=source(EXTRA_PROPERTY=["plan"]))
    message = only(errors_for(settings, value), "tracking_adapter.E010")
    assert "EXTRA_PROPERTY" in message.msg
    assert "'EXTRA_PROPERTIES'" in (message.hint or "")


def test_source_not_a_dict(settings: Any) -> None:
    only(errors_for(settings, config(SOURCE="testapp.Profile")), "tracking_adapter.E010")


@pytest.mark.parametrize("model", ["testapp.Profil", "Profile", "nope.Profile"])
def test_source_model_that_does_not_exist(settings: Any, model: str) -> None:
    message = only(
        errors_for(settings, config(SOURCE=source(MODEL=model))), "tracking_adapter.E011"
    )
    assert model in message.msg


@pytest.mark.parametrize("key", ["USER_ID", "GROUP_ID"])
def test_source_missing_id_path(settings: Any, key: str) -> None:
    message = only(
        errors_for(settings, config(SOURCE=source(**{key: None}))), "tracking_adapter.E012"
    )
    assert key in message.msg


def test_source_properties_and_provider_both(settings: Any) -> None:
    value = config(SOURCE=source(PROVIDER=["clearbit", "clearbit"]))
    message = only(errors_for(settings, value), "tracking_adapter.E013")
    assert "PROPERTIES" in message.msg
    assert "PROVIDER" in message.msg


def test_source_with_no_property_source(settings: Any) -> None:
    only(errors_for(settings, config(SOURCE=source(PROPERTIES=None))), "tracking_adapter.E013")


def test_misspelled_property_name(settings: Any) -> None:
    value = config(SOURCE=source(PROPERTIES={"enrichment_citty": "city"}))
    message = only(errors_for(settings, value), "tracking_adapter.E014")
    assert "enrichment_citty" in message.msg
    assert "'enrichment_city'" in (message.hint or "")


def test_non_enrichment_property_hints_at_extra_properties(settings: Any) -> None:
    value = config(SOURCE=source(PROPERTIES={"plan_tier": "title"}))
    message = only(errors_for(settings, value), "tracking_adapter.E014")
    assert "EXTRA_PROPERTIES" in (message.hint or "")


def test_extra_property_listed_in_extra_properties_is_allowed(settings: Any) -> None:
    properties = {"enrichment_city": "city", "plan_tier": "title"}
    value = config(SOURCE=source(PROPERTIES=properties, EXTRA_PROPERTIES=["plan_tier"]))
    assert errors_for(settings, value) == []


def test_attribute_path_with_a_typo(settings: Any) -> None:
    value = config(SOURCE=source(PROPERTIES={"enrichment_city": "cty"}))
    message = only(errors_for(settings, value), "tracking_adapter.E015")
    assert "'cty'" in message.msg
    assert "Did you mean 'city'?" in message.msg


def test_attribute_path_with_a_typo_through_a_relation(settings: Any) -> None:
    value = config(SOURCE=source(GROUP_ID="account.externl_id"))
    message = only(errors_for(settings, value), "tracking_adapter.E015")
    assert "GROUP_ID" in message.msg
    assert "Account has no field or attribute 'externl_id'" in message.msg
    assert "'external_id'" in message.msg


def test_attribute_path_into_a_plain_field(settings: Any) -> None:
    value = config(SOURCE=source(PROPERTIES={"enrichment_city": "city.name"}))
    message = only(errors_for(settings, value), "tracking_adapter.E015")
    assert "CharField" in message.msg


def test_timestamp_path_is_checked_too(settings: Any) -> None:
    only(errors_for(settings, config(SOURCE=source(TIMESTAMP="enriched"))), "tracking_adapter.E015")


@pytest.mark.parametrize(
    "path",
    [
        "account.external_id",  # through a foreign key
        "account.name",
        "user.username",  # through a one-to-one
        "user.email",
        "tracking_user_id",  # a property
        "user.get_full_name",  # a method on the related model
        "clearbit.person.geo.city",  # into a JSONField
        "account_id",  # an attname
    ],
)
def test_valid_paths_pass(settings: Any, path: str) -> None:
    value = config(SOURCE=source(PROPERTIES={"enrichment_city": path}))
    assert errors_for(settings, value) == []


def test_unknown_provider(settings: Any) -> None:
    value = config(SOURCE=source(PROPERTIES=None, PROVIDER=["clearbitt", "clearbit"]))
    message = only(errors_for(settings, value), "tracking_adapter.E016")
    assert "clearbitt" in message.msg
    assert "'clearbit'" in (message.hint or "")


def test_provider_not_a_pair(settings: Any) -> None:
    value = config(SOURCE=source(PROPERTIES=None, PROVIDER="clearbit"))
    only(errors_for(settings, value), "tracking_adapter.E016")


def test_known_provider_with_a_good_payload_path(settings: Any) -> None:
    value = config(SOURCE=source(PROPERTIES=None, PROVIDER=["clearbit", "clearbit"]))
    assert errors_for(settings, value) == []


def test_provider_payload_path_is_checked(settings: Any) -> None:
    value = config(SOURCE=source(PROPERTIES=None, PROVIDER=["clearbit", "clearbit_json"]))
    message = only(errors_for(settings, value), "tracking_adapter.E015")
    assert "clearbit_json" in message.msg


def test_unimportable_mapper(settings: Any) -> None:
    value = config(SOURCE=source(PROPERTIES=None, MAPPER="no_such_module_here.map_profile"))
    message = only(errors_for(settings, value), "tracking_adapter.E017")
    assert "no_such_module_here.map_profile" in message.msg


def test_mapper_that_is_not_callable(settings: Any) -> None:
    value = config(SOURCE=source(PROPERTIES=None, MAPPER="os.sep"))
    only(errors_for(settings, value), "tracking_adapter.E017")


def test_importable_mapper_is_fine(settings: Any) -> None:
    value = config(
        SOURCE=source(PROPERTIES=None, MAPPER="tracking_adapter.providers.from_clearbit")
    )
    assert errors_for(settings, value) == []


def test_several_problems_are_all_reported(settings: Any) -> None:
    value = config(
        SINK="thrivestak",
        DISPATCH="workers",
        BATCH_SIZE=0,
        SOURCE=source(PROPERTIES={"enrichment_citty": "cty"}),
    )
    ids = sorted(m.id for m in errors_for(settings, value))
    assert ids == [
        "tracking_adapter.E003",
        "tracking_adapter.E007",
        "tracking_adapter.E014",
        "tracking_adapter.E015",
        "tracking_adapter.E018",
    ]


# -- a broken SOURCE never breaks a save ------------------------------------------------------


def _profile(**fields: Any) -> Profile:
    user = get_user_model().objects.create(username=f"u{get_user_model().objects.count()}")
    account, _ = Account.objects.get_or_create(external_id="acct_1")
    return Profile.objects.create(user=user, account=account, **fields)


@pytest.mark.django_db
def test_misconfigured_path_never_breaks_a_save(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.TRACKING_ADAPTER = config(
        SOURCE=source(PROPERTIES={"enrichment_city": "no_such_attr"})
    )
    with caplog.at_level(logging.ERROR):
        profile = _profile(city="Pune")
        profile.city = "Mumbai"
        profile.save()
    profile.refresh_from_db()
    assert profile.city == "Mumbai"
    assert OutboxEvent.objects.count() == 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors
    assert any("TRACKING_ADAPTER" in r.getMessage() for r in errors)
    assert any("no_such_attr" in r.getMessage() for r in errors)


@pytest.mark.django_db
def test_misconfigured_model_never_breaks_a_save(settings: Any) -> None:
    settings.TRACKING_ADAPTER = config(SOURCE=source(MODEL="testapp.Nope"))
    profile = _profile(city="Pune")
    profile.city = "Mumbai"
    profile.save()
    assert Profile.objects.get(pk=profile.pk).city == "Mumbai"
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_broken_sink_setting_never_breaks_a_save(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.TRACKING_ADAPTER = config(SINK="thrivestak", DISPATCH="inline")
    with caplog.at_level(logging.ERROR):
        profile = _profile(city="Pune")  # commits: the inline delivery runs and fails
    assert any("thrivestak" in r.getMessage() + str(r.exc_info) for r in caplog.records)
    assert Profile.objects.get(pk=profile.pk).city == "Pune"
    # The event is kept for delivery once the setting is fixed.
    assert OutboxEvent.objects.filter(status="pending").count() == 1


def test_the_startup_log_shows_a_hint_only_when_there_is_one(settings, caplog) -> None:
    from django.apps import apps as django_apps

    settings.TRACKING_ADAPTER = config(DISPATCH="task")  # E007 has a hint; E001 has none
    with caplog.at_level(logging.ERROR, logger="django_app"):
        django_apps.get_app_config("django_app").ready()
    settings.TRACKING_ADAPTER = ["not", "a", "dict"]
    with caplog.at_level(logging.ERROR, logger="django_app"):
        django_apps.get_app_config("django_app").ready()
    lines = [r.getMessage() for r in caplog.records if "tracking_adapter.E0" in r.getMessage()]
    assert any("E007" in line and "(hint: " in line for line in lines), lines
    assert any("E001" in line for line in lines), lines
    assert not any("(hint: None)" in line for line in lines), lines

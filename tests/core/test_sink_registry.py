"""create_sink / sink_class: aliases, dotted paths to your own sink, and errors naming settings."""

from __future__ import annotations

import io
from collections.abc import Sequence

import pytest

from tracking_adapter import ConfigurationError, UserEnrichedEvent
from tracking_adapter.sinks import (
    SINK_ALIASES,
    ConsoleSink,
    FileSink,
    MemorySink,
    Outcome,
    SegmentSink,
    SendResult,
    Sink,
    ThriveStackSink,
    create_sink,
    sink_class,
)


class MySink(Sink):
    """A user's own sink, found by its dotted path."""

    def __init__(self, table: str, *, batch: int = 10) -> None:
        self.table = table
        self.batch = batch
        self.seen: list[UserEnrichedEvent] = []

    def send(self, events: Sequence[UserEnrichedEvent]) -> SendResult:
        self.seen.extend(events)
        return SendResult.every(len(events), Outcome.delivered())


class NotASink:
    pass


class FussySink(Sink):
    def __init__(self, level: int) -> None:
        if level > 3:
            raise ValueError("level must be at most 3")

    def send(self, events):
        return SendResult.every(len(events), Outcome.delivered())


MY_SINK = f"{__name__}.MySink"


@pytest.mark.parametrize(
    ("alias", "cls"),
    [
        ("thrivestack", ThriveStackSink),
        ("segment", SegmentSink),
        ("console", ConsoleSink),
        ("file", FileSink),
        ("memory", MemorySink),
    ],
)
def test_aliases(alias, cls):
    assert sink_class(alias) is cls
    assert SINK_ALIASES[alias] == f"{cls.__module__}.{cls.__name__}"


def test_create_by_alias_with_options(tmp_path):
    sink = create_sink("thrivestack", {"api_key": "k-123456", "endpoint": "https://x.io/api/"})
    assert isinstance(sink, ThriveStackSink)
    assert sink.url == "https://x.io/api/track"
    segment = create_sink("segment", {"write_key": "wk-123456", "gzip": False})
    assert isinstance(segment, SegmentSink)
    assert segment.gzip is False
    assert isinstance(create_sink("console"), ConsoleSink)
    assert isinstance(create_sink("console", {"stream": io.StringIO()}), ConsoleSink)
    assert isinstance(create_sink("file", {"path": tmp_path / "e.jsonl"}), FileSink)
    store: list = []
    memory = create_sink("memory", {"store": store})
    assert isinstance(memory, MemorySink)
    assert memory.store is store


def test_a_class_is_accepted_as_is():
    assert sink_class(MemorySink) is MemorySink
    assert isinstance(create_sink(MySink, {"table": "t"}), MySink)


def test_full_dotted_path_to_a_builtin_sink():
    assert sink_class("tracking_adapter.sinks.local.MemorySink") is MemorySink


def test_dotted_path_to_a_users_sink():
    assert MY_SINK == "tests.core.test_sink_registry.MySink"
    assert sink_class(MY_SINK) is MySink
    sink = create_sink(MY_SINK, {"table": "events", "batch": 5})
    assert isinstance(sink, MySink)
    assert (sink.table, sink.batch) == ("events", 5)
    assert sink.send([]).all_delivered


def test_unknown_alias_names_the_setting_and_lists_the_choices():
    with pytest.raises(ConfigurationError) as caught:
        sink_class("thrivestak")
    message = str(caught.value)
    assert "SINK" in message
    assert "thrivestak" in message
    for alias in ("thrivestack", "segment", "console", "file", "memory"):
        assert f"'{alias}'" in message


def test_the_setting_name_is_configurable():
    with pytest.raises(ConfigurationError, match=r"TRACKING_ADAPTER\['SINK'\]"):
        create_sink("nope", setting="TRACKING_ADAPTER['SINK']")


@pytest.mark.parametrize("spec", ["", None, 42, NotASink])
def test_empty_or_wrong_type(spec):
    with pytest.raises(ConfigurationError, match="SINK"):
        sink_class(spec)


def test_unimportable_module():
    with pytest.raises(ConfigurationError, match="cannot import") as caught:
        sink_class("no_such_package_xyz.sinks.Thing")
    assert "SINK" in str(caught.value)
    assert "no_such_package_xyz.sinks" in str(caught.value)


def test_a_module_that_fails_to_import_its_own_dependency(tmp_path, monkeypatch):
    (tmp_path / "user_sinks_needing_a_dep.py").write_text(
        "import a_dependency_that_is_not_installed_xyz\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigurationError, match="cannot import") as caught:
        sink_class("user_sinks_needing_a_dep.WarehouseSink")
    assert "a_dependency_that_is_not_installed_xyz" in str(caught.value)


def test_a_relative_dotted_path_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="SINK"):
        sink_class(".sinks.MySink")


def test_missing_attribute():
    with pytest.raises(ConfigurationError, match="does not exist") as caught:
        sink_class(f"{__name__}.NoSuchSink")
    assert "SINK" in str(caught.value)


@pytest.mark.parametrize("path", [f"{__name__}.NotASink", "json.dumps", f"{__name__}.MY_SINK"])
def test_not_a_sink_subclass(path):
    with pytest.raises(ConfigurationError, match="not a Sink subclass"):
        sink_class(path)


def test_a_wrong_option_name_names_sink_options():
    with pytest.raises(ConfigurationError) as caught:
        create_sink("thrivestack", {"api_key": "k-123456", "endpont": "https://x.io"})
    message = str(caught.value)
    assert "SINK_OPTIONS" in message
    assert "endpont" in message
    assert "ThriveStackSink" in message


def test_a_misspelt_required_option_names_sink_options():
    with pytest.raises(ConfigurationError, match="SINK_OPTIONS") as caught:
        create_sink("thrivestack", {"apikey": "k-123456"})
    assert "api_key" in str(caught.value)


def test_a_missing_required_option_names_sink_options():
    with pytest.raises(ConfigurationError, match="SINK_OPTIONS") as caught:
        create_sink(MY_SINK, {})
    assert "table" in str(caught.value)


def test_the_options_setting_name_is_configurable():
    with pytest.raises(ConfigurationError, match=r"TRACKING_ADAPTER\['SINK_OPTIONS'\]"):
        create_sink(MY_SINK, {"tabel": "x"}, options_setting="TRACKING_ADAPTER['SINK_OPTIONS']")


def test_a_bad_option_value_from_the_constructor_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="SINK_OPTIONS for FussySink: level must be"):
        create_sink(FussySink, {"level": 9})


def test_a_sinks_own_configuration_error_passes_through():
    with pytest.raises(ConfigurationError, match="api_key"):
        create_sink("thrivestack", {"api_key": ""})
    with pytest.raises(ConfigurationError, match="endpoint"):
        create_sink("thrivestack", {"api_key": "k-123456", "endpoint": "http://example.com"})


def test_options_mapping_is_not_mutated():
    options = {"table": "t"}
    create_sink(MY_SINK, options)
    assert options == {"table": "t"}

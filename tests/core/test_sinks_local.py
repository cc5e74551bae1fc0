"""ConsoleSink, FileSink and MemorySink."""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tracking_adapter import UserEnrichedEvent
from tracking_adapter.errors import ConfigurationError
from tracking_adapter.sinks import ConsoleSink, FileSink, MemorySink, Status

DATA = Path(__file__).resolve().parent / "data"
REPO = Path(__file__).resolve().parents[2]
SAMPLE = json.loads((DATA / "spec_sample_1.json").read_text(encoding="utf-8"))


def make_events(count: int, *, start: int = 0, **extra) -> list[UserEnrichedEvent]:
    events = []
    for number in range(start, start + count):
        data = copy.deepcopy(SAMPLE)
        data["user_id"] = f"user_{number}"
        data["properties"].update(extra)
        events.append(UserEnrichedEvent.model_validate(data))
    return events


# -- console ---------------------------------------------------------------------------


def test_console_writes_one_json_line_per_event_to_the_given_stream():
    stream = io.StringIO()
    events = make_events(3)
    events[0].properties.enrichment_city = "São Paulo"
    result = ConsoleSink(stream).send(events)
    assert result.all_delivered
    assert len(result) == 3
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert stream.getvalue().endswith("\n")
    assert [json.loads(line) for line in lines] == [e.to_thrivestack() for e in events]
    assert "São Paulo" in lines[0]  # readable, not \u-escaped


def test_console_defaults_to_stdout_looked_up_at_send_time(capsys):
    sink = ConsoleSink()  # no stream: sys.stdout, here captured by capsys
    events = make_events(2)
    sink.send(events)
    out = capsys.readouterr().out
    assert [json.loads(line)["user_id"] for line in out.splitlines()] == ["user_0", "user_1"]


def test_console_empty_send():
    stream = io.StringIO()
    assert len(ConsoleSink(stream).send([])) == 0
    assert stream.getvalue() == ""


def test_console_describe():
    assert ConsoleSink().describe() == "console"


# -- file ------------------------------------------------------------------------------


def test_file_appends_json_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    sink = FileSink(path)
    first, second = make_events(2), make_events(3, start=2)
    assert sink.send(first).all_delivered
    assert sink.send(second).all_delivered
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [e.to_thrivestack() for e in first + second]


def test_file_appends_to_an_existing_file(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"already": "here"}\n', encoding="utf-8")
    FileSink(str(path)).send(make_events(1))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"already": "here"}
    assert json.loads(lines[1])["user_id"] == "user_0"


def test_file_unwritable_path_is_a_retry_not_an_exception(tmp_path):
    sink = FileSink(tmp_path / "missing-directory" / "events.jsonl")
    result = sink.send(make_events(3))
    assert [o.status for o in result.outcomes] == [Status.RETRY] * 3
    assert "cannot write" in result.outcomes[0].reason
    assert "missing-directory" in result.outcomes[0].reason


def test_file_path_that_is_a_directory_is_a_retry(tmp_path):
    result = FileSink(tmp_path).send(make_events(2))
    assert result.retried == 2


def test_file_needs_a_path():
    with pytest.raises(ConfigurationError, match="path"):
        FileSink("")


WRITER = """
import copy, json, sys
from tracking_adapter import UserEnrichedEvent
from tracking_adapter.sinks import FileSink

path, worker, count, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sample = json.loads(open(sys.argv[5], encoding="utf-8").read())
sink = FileSink(path)
events = []
for number in range(count):
    data = copy.deepcopy(sample)
    data["user_id"] = f"w{worker}-{number}"
    data["properties"]["padding"] = "x" * 6000  # lines well over PIPE_BUF
    events.append(UserEnrichedEvent.model_validate(data))
for start in range(0, count, batch):
    result = sink.send(events[start:start + batch])
    assert result.all_delivered, result
"""


def test_file_is_safe_for_concurrent_writer_processes(tmp_path):
    path = tmp_path / "shared.jsonl"
    workers, count, batch = 4, 150, 7
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                str(path),
                str(worker),
                str(count),
                str(batch),
                str(DATA / "spec_sample_1.json"),
            ],
            cwd=REPO,
            stderr=subprocess.PIPE,
        )
        for worker in range(workers)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr.decode()

    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends with a newline
    items = [json.loads(line) for line in lines[:-1]]  # every line parses
    assert len(items) == workers * count
    ids = [item["user_id"] for item in items]
    assert sorted(ids) == sorted(f"w{w}-{n}" for w in range(workers) for n in range(count))
    # Each writer's own events stay in its order.
    for worker in range(workers):
        mine = [int(i.split("-")[1]) for i in ids if i.startswith(f"w{worker}-")]
        assert mine == list(range(count))


def test_file_describe(tmp_path):
    assert FileSink(tmp_path / "e.jsonl").describe() == f"file {tmp_path / 'e.jsonl'}"


# -- memory ----------------------------------------------------------------------------


@pytest.fixture
def clean_memory():
    MemorySink.clear()
    yield
    MemorySink.clear()


def test_memory_sink_class_level_store(clean_memory):
    events = make_events(3)
    first, second = MemorySink(), MemorySink()
    assert first.send(events[:2]).all_delivered
    assert second.send(events[2:]).all_delivered
    assert MemorySink.sent == events  # shared by every default instance
    assert first.store is MemorySink.sent
    MemorySink.clear()
    assert MemorySink.sent == []
    assert first.store is MemorySink.sent  # cleared in place, still observed


def test_memory_sink_with_its_own_store(clean_memory):
    store: list[UserEnrichedEvent] = []
    events = make_events(2)
    result = MemorySink(store).send(events)
    assert result.delivered == 2
    assert store == events
    assert MemorySink.sent == []


def test_memory_sink_describe():
    assert MemorySink([]).describe() == "memory"


def test_sinks_are_context_managers(tmp_path):
    with FileSink(tmp_path / "x.jsonl") as sink:
        assert isinstance(sink, FileSink)
    with ConsoleSink(io.StringIO()) as console:
        console.send(make_events(1))

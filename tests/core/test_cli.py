"""``python -m tracking_adapter``: the ``schema`` and ``validate`` commands, run as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.core.conftest import DATA, REPO, schema_errors
from tracking_adapter import UserEnrichedEvent
from tracking_adapter.schema import GroupEnrichedEvent
from tracking_adapter.wire_schema import event_json_schema


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, "-m", "tracking_adapter", *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=REPO,
        env=env,
        timeout=60,
    )


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def printed_schema() -> dict[str, Any]:
    result = run_cli("schema")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


class TestSchemaCommand:
    def test_prints_the_wire_schema(self, printed_schema):
        assert printed_schema == event_json_schema()
        assert printed_schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"

    def test_spec_samples_satisfy_the_printed_schema(self, printed_schema, spec_sample):
        assert schema_errors(printed_schema, spec_sample) == []

    def test_thrivestack_form_satisfies_the_printed_schema(self, printed_schema, spec_sample):
        item = UserEnrichedEvent.model_validate(spec_sample).to_thrivestack()
        assert schema_errors(printed_schema, item) == []

    def test_printed_schema_rejects_a_bad_event(self, printed_schema, sample_1):
        sample_1["event"] = "signed_up"
        assert schema_errors(printed_schema, sample_1)

    @pytest.mark.parametrize("name", ["user_enriched", "group_enriched"])
    def test_event_option_picks_the_schema(self, name):
        result = run_cli("schema", "--event", name)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == event_json_schema(name)
        assert json.loads(result.stdout)["title"] == name

    def test_group_enriched_schema_accepts_its_thrivestack_item(self):
        result = run_cli("schema", "--event", "group_enriched")
        event = GroupEnrichedEvent(
            user_id="u", group_id="acme", properties={"enrichment_employees": 120}
        )
        assert schema_errors(json.loads(result.stdout), event.to_thrivestack()) == []

    def test_unknown_event_is_a_usage_error(self):
        result = run_cli("schema", "--event", "signed_up")
        assert result.returncode == 2
        assert "invalid choice: 'signed_up'" in result.stderr
        assert "group_enriched" in result.stderr


class TestValidateCommand:
    @pytest.mark.parametrize("name", ["spec_sample_1.json", "spec_sample_2.json"])
    def test_spec_samples_are_valid(self, name):
        result = run_cli("validate", DATA / name)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == "1 valid user_enriched event(s)"

    def test_array_of_valid_events(self, tmp_path, sample_1, sample_2):
        item = UserEnrichedEvent.model_validate(sample_1).to_thrivestack()
        path = write_json(tmp_path / "batch.json", [sample_1, sample_2, item])
        result = run_cli("validate", path)
        assert result.returncode == 0, result.stdout
        assert result.stdout.strip() == "3 valid user_enriched event(s)"

    def test_array_with_errors_names_each_path(self, tmp_path, sample_1, sample_2):
        sample_1["user_id"] = "  "
        sample_2["properties"]["enrichment_city"] = 5
        sample_2["properties"]["enrichment_phone"] = ["+1", 2]
        sample_2["timestamp"] = "yesterday"
        path = write_json(tmp_path / "events.json", [sample_1, sample_2])
        result = run_cli("validate", path)
        assert result.returncode == 1
        lines = result.stdout.splitlines()
        assert f"{path}: [0].user_id: user_id must not be empty" in lines
        assert (
            f"{path}: [1].properties.enrichment_city: expected a string or null, got int 5" in lines
        )
        assert any(
            line.startswith(f"{path}: [1].properties.enrichment_phone: item 1 ") for line in lines
        )
        assert any(line.startswith(f"{path}: [1].timestamp: ") for line in lines)
        assert lines[-1] == "4 error(s) in 2 event(s)"

    def test_single_event_errors_have_no_index(self, tmp_path, sample_1):
        sample_1["properties"]["enrichment_city"] = ["Pune"]
        path = write_json(tmp_path / "one.json", sample_1)
        result = run_cli("validate", path)
        assert result.returncode == 1
        assert result.stdout.splitlines() == [
            f"{path}: properties.enrichment_city: expected a string or null, got list ['Pune']",
            "1 error(s) in 1 event(s)",
        ]

    def test_event_level_error_and_non_object_item(self, tmp_path, sample_1):
        sample_1["event"] = "signed_up"
        path = write_json(tmp_path / "mixed.json", [sample_1, "not an event"])
        result = run_cli("validate", path)
        assert result.returncode == 1
        assert "[0]" in result.stdout
        assert "must be 'user_enriched'" in result.stdout
        assert f"{path}: [1]: expected a JSON object, got str" in result.stdout
        assert f"{path}: [0]: event is 'signed_up'" in result.stdout
        assert result.stdout.splitlines()[-1] == "2 error(s) in 2 event(s)"

    def test_invalid_json_reports_line_and_column(self, tmp_path):
        path = tmp_path / "broken.json"
        path.write_text('{\n  "user_id": "u",\n  "event": }\n', encoding="utf-8")
        result = run_cli("validate", path)
        assert result.returncode == 1
        assert f"{path}: not valid JSON" in result.stdout
        assert "(line 3, column 12)" in result.stdout

    def test_non_utf8_file_is_reported(self, tmp_path):
        path = tmp_path / "latin1.json"
        path.write_bytes('{"user_id": "Jos\xe9"}'.encode("latin-1"))
        result = run_cli("validate", path)
        assert result.returncode == 1
        assert "not UTF-8 text" in result.stdout

    def test_missing_file_exits_2(self, tmp_path):
        path = tmp_path / "does-not-exist.json"
        result = run_cli("validate", path)
        assert result.returncode == 2
        assert f"{path}: cannot read" in result.stderr
        assert "Traceback" not in result.stderr

    def test_usage_errors_exit_2(self):
        assert run_cli().returncode == 2
        assert run_cli("validate").returncode == 2
        assert run_cli("validate", DATA / "spec_sample_1.json", "--event", "x").returncode == 2

    def test_each_item_is_validated_as_the_event_it_names(self, tmp_path, sample_1, sample_2):
        group = {
            "event": "group_enriched",
            "user_id": "u",
            "context": {"group_id": "acme"},
            "properties": {"enrichment_phone": "+1 555 0100", "enrichment_employees": 120},
        }
        path = write_json(tmp_path / "mixed.json", [sample_1, group, sample_2])
        result = run_cli("validate", path)
        assert result.returncode == 0, result.stdout
        assert result.stdout.strip() == "3 valid event(s): 2 user_enriched, 1 group_enriched"

    def test_event_name_spelling_picks_the_kind_too(self, tmp_path):
        item = GroupEnrichedEvent(user_id="u", group_id="acme").to_thrivestack()
        result = run_cli("validate", write_json(tmp_path / "group.json", [item, item]))
        assert result.returncode == 0, result.stdout
        assert result.stdout.strip() == "2 valid group_enriched event(s)"

    def test_group_enriched_errors_are_its_own(self, tmp_path):
        group = {
            "event_name": "group_enriched",
            "user_id": "u",
            "context": {"group_id": "acme"},
            "properties": {"enrichment_employees": "many", "enrichment_phone": ["+1"]},
        }
        path = write_json(tmp_path / "group.json", group)
        result = run_cli("validate", path)
        assert result.returncode == 1
        lines = result.stdout.splitlines()
        assert any(
            line.startswith(f"{path}: properties.enrichment_employees: expected an integer")
            for line in lines
        )
        assert any(line.startswith(f"{path}: properties.enrichment_phone: ") for line in lines)
        assert lines[-1] == "2 error(s) in 1 event(s)"

    def test_event_option_validates_every_item_as_that_event(self, tmp_path, sample_1):
        path = write_json(tmp_path / "one.json", [sample_1])
        result = run_cli("validate", path, "--event", "group_enriched")
        assert result.returncode == 1
        assert (
            f"{path}: [0]: event is 'user_enriched', but it must be 'group_enriched'"
            in result.stdout
        )
        # Nothing names the kind: the option decides (a user's phone list is not a group's).
        unnamed = {"user_id": "u", "group_id": "g", "properties": {"enrichment_city": "Pune"}}
        path = write_json(tmp_path / "unnamed.json", [unnamed])
        result = run_cli("validate", path, "--event", "group_enriched")
        assert result.returncode == 0, result.stdout
        assert result.stdout.strip() == "1 valid group_enriched event(s)"
        result = run_cli("validate", path, "--event", "user_enriched")
        assert result.stdout.strip() == "1 valid user_enriched event(s)"

    def test_unhashable_event_name_is_reported_not_a_traceback(self, tmp_path, sample_1):
        sample_1["event"] = ["user_enriched"]
        result = run_cli("validate", write_json(tmp_path / "odd.json", sample_1))
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert "error(s) in 1 event(s)" in result.stdout


def test_a_reader_that_stops_early_gets_no_traceback():
    # ``tracking-adapter schema | head -1``: head closes the pipe after one line.
    env = dict(os.environ, PYTHONPATH=str(REPO))
    writer = subprocess.Popen(
        [sys.executable, "-m", "tracking_adapter", "schema"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    assert writer.stdout is not None
    writer.stdout.readline()
    writer.stdout.close()  # the reader goes away before the schema is all written
    _, err = writer.communicate(timeout=60)
    assert b"Traceback" not in err, err.decode()
    assert b"BrokenPipeError" not in err
    assert writer.returncode == 0


class TestDoctor:
    def run(self, cwd: Path) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(cwd)}
        return subprocess.run(
            [sys.executable, "-m", "tracking_adapter", "doctor"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def test_the_installed_app_is_ok(self, tmp_path):
        result = self.run(tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ok: django_app is the app installed with tracking-adapter" in result.stdout

    def test_a_host_package_named_django_app_is_reported(self, tmp_path):
        (tmp_path / "django_app").mkdir()
        (tmp_path / "django_app" / "__init__.py").write_text("")
        result = self.run(tmp_path)
        assert result.returncode == 1
        assert "shadows it" in result.stdout
        assert str(tmp_path / "django_app") in result.stdout

"""Command line: ``python -m tracking_adapter schema [--event NAME]`` and
``python -m tracking_adapter validate FILE [--event NAME]``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from tracking_adapter.errors import describe_validation_error
from tracking_adapter.schema import EVENT_NAME, EVENT_TYPES, EnrichedEvent
from tracking_adapter.wire_schema import event_json_schema


def _print_schema(args: argparse.Namespace) -> int:
    json.dump(event_json_schema(args.event or EVENT_NAME), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _event_class_of(item: dict[str, Any]) -> type[EnrichedEvent]:
    """The kind an item says it is (``event``, else ``event_name``); user_enriched when it
    names none, or none known (its model then reports the name)."""
    for key in ("event", "event_name"):
        name = item.get(key)
        if isinstance(name, str) and name in EVENT_TYPES:
            return EVENT_TYPES[name]
    return EVENT_TYPES[EVENT_NAME]


def _validate(args: argparse.Namespace) -> int:
    try:
        with open(args.file, encoding="utf-8") as handle:
            document: Any = json.load(handle)
    except OSError as exc:
        print(f"{args.file}: cannot read: {exc.strerror}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as exc:
        print(f"{args.file}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
        return 1
    except UnicodeDecodeError as exc:
        print(f"{args.file}: not UTF-8 text: byte {exc.start} cannot be decoded")
        return 1

    items = document if isinstance(document, list) else [document]
    prefix_items = isinstance(document, list)
    errors = 0
    valid: Counter[str] = Counter()
    for index, item in enumerate(items):
        where = f"[{index}]" if prefix_items else ""
        if not isinstance(item, dict):
            print(
                f"{args.file}: {where or '(event)'}: expected a JSON object, got {type(item).__name__}"
            )
            errors += 1
            continue
        event_class = EVENT_TYPES[args.event] if args.event else _event_class_of(item)
        try:
            event_class.model_validate(item)
        except ValidationError as exc:
            for path, message in describe_validation_error(exc):
                if path == "(event)":
                    path = ""
                separator = "." if where and path else ""
                location = f"{where}{separator}{path}" or "(event)"
                print(f"{args.file}: {location}: {message}")
                errors += 1
        else:
            valid[event_class.EVENT_NAME] += 1
    if errors:
        print(f"{errors} error(s) in {len(items)} event(s)")
        return 1
    if len(valid) > 1:
        kinds = ", ".join(f"{valid[name]} {name}" for name in EVENT_TYPES if name in valid)
        print(f"{len(items)} valid event(s): {kinds}")
    else:
        name = next(iter(valid), args.event or EVENT_NAME)
        print(f"{len(items)} valid {name} event(s)")
    return 0


def _doctor(_args: argparse.Namespace) -> int:
    """Where ``django_app`` is imported from: a host package of that name shadows the app
    (no commands, no migrations, a ``check`` that passes), and nothing else can tell."""
    import importlib.util
    from pathlib import Path

    ours = Path(__file__).resolve().parent.parent  # where tracking_adapter was installed
    spec = importlib.util.find_spec("django_app")
    if spec is None or not spec.submodule_search_locations:
        print("django_app cannot be imported: pip install 'tracking-adapter[django]'")
        return 1
    found = Path(next(iter(spec.submodule_search_locations))).resolve()
    print(f"tracking_adapter: {ours / 'tracking_adapter'}")
    print(f"django_app:       {found}")
    if found.parent != ours or not (found / "store").is_dir():
        print(
            f"django_app is not this package's Django app: {found} comes first on sys.path "
            "and shadows it (Django then loads that package, whose checks, migrations and "
            "commands are not ours). Rename that package; the app's import name is fixed "
            "at django_app."
        )
        return 1
    print("ok: django_app is the app installed with tracking-adapter")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tracking_adapter",
        description=f"Tools for ThriveStack's enrichment events ({', '.join(EVENT_TYPES)}).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    schema = commands.add_parser("schema", help="print an event's wire JSON Schema")
    schema.add_argument(
        "--event",
        choices=list(EVENT_TYPES),
        help=f"the event whose schema to print (default: {EVENT_NAME})",
    )
    schema.set_defaults(handler=_print_schema)
    validate = commands.add_parser(
        "validate", help="validate a JSON file holding one event or an array of events"
    )
    validate.add_argument("file", help="path to the JSON file")
    validate.add_argument(
        "--event",
        choices=list(EVENT_TYPES),
        help=(
            "validate every item as this event (default: the event each item names in "
            f"'event' or 'event_name', {EVENT_NAME} when it names none)"
        ),
    )
    validate.set_defaults(handler=_validate)
    doctor = commands.add_parser(
        "doctor", help="check that django_app is this package's app, not a host package"
    )
    doctor.set_defaults(handler=_doctor)
    args = parser.parse_args(argv)
    handler = args.handler
    try:
        result: int = handler(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``schema | head``): not an error of ours, and no traceback.
        # Later writes, the interpreter's own flush at exit included, go nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return result


if __name__ == "__main__":
    sys.exit(main())

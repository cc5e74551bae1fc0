"""Command line: ``python -m tracking_adapter schema`` and ``python -m tracking_adapter validate FILE``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from tracking_adapter.errors import describe_validation_error
from tracking_adapter.schema import UserEnrichedEvent
from tracking_adapter.wire_schema import event_json_schema


def _print_schema(_args: argparse.Namespace) -> int:
    json.dump(event_json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


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
    for index, item in enumerate(items):
        where = f"[{index}]" if prefix_items else ""
        if not isinstance(item, dict):
            print(
                f"{args.file}: {where or '(event)'}: expected a JSON object, got {type(item).__name__}"
            )
            errors += 1
            continue
        try:
            UserEnrichedEvent.model_validate(item)
        except ValidationError as exc:
            for path, message in describe_validation_error(exc):
                if path == "(event)":
                    path = ""
                separator = "." if where and path else ""
                location = f"{where}{separator}{path}" or "(event)"
                print(f"{args.file}: {location}: {message}")
                errors += 1
    if errors:
        print(f"{errors} error(s) in {len(items)} event(s)")
        return 1
    print(f"{len(items)} valid user_enriched event(s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tracking_adapter",
        description="Tools for ThriveStack's user_enriched event.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    schema = commands.add_parser("schema", help="print the event's JSON Schema")
    schema.set_defaults(handler=_print_schema)
    validate = commands.add_parser(
        "validate", help="validate a JSON file holding one event or an array of events"
    )
    validate.add_argument("file", help="path to the JSON file")
    validate.set_defaults(handler=_validate)
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

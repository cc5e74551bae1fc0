"""Each contender runs in its own process: ``python -m bench.contenders NAME N``.

Prints one JSON line: seconds, CPU seconds (this process and the workers it waited for),
peak RSS. The receiver (another process) counts what arrived.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from example_project.profiles.models import Profile  # noqa: E402
from tracking_adapter import PROPERTY_NAMES  # noqa: E402

# The same model fields the project maps (example_project's SOURCE), written by hand in the
# baseline and the floor the way a user would.
PROPERTY_FIELDS: dict[str, str] = settings.TRACKING_ADAPTER["SOURCE"]["PROPERTIES"]
ALL_PROPERTIES = list(PROPERTY_NAMES)


def peak_rss_mb() -> float:
    """Peak resident set of this process, in MB: VmHWM, which starts afresh at exec.
    (``getrusage(RUSAGE_SELF).ru_maxrss`` does not on Linux: it carries over the peak of
    the process that started us, here the runner after seeding.)"""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User and system CPU of this process and of the children it has waited for (the
    backfill's forked workers are joined before it returns)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def workers_peak_rss_mb() -> float:
    """Peak resident set of the largest worker process this one forked and waited for, in
    MB (0 when it forked none). A forked worker's figure counts the pages it shares with
    us, so it errs high."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


class TreeMemory:
    """Samples the proportional set size (PSS) of this process and its children, summed,
    four times a second (reading it walks page tables: more often slows what is measured),
    and keeps the peak. Unlike adding up each process's RSS, PSS counts
    a page that forked workers share with their parent once, which is what the machine
    actually spends. Linux only (``/proc/PID/smaps_rollup``); 0 elsewhere."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while True:
            total = sum(_pss_kb(pid) for pid in _tree(os.getpid()))
            self.peak_mb = max(self.peak_mb, total / 1024)
            if self._done.wait(0.25):
                return


def _tree(pid: int) -> list[int]:
    pids, pending = [], [pid]
    while pending:
        current = pending.pop()
        pids.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending += [int(child) for child in children.read().split()]
        except OSError:
            continue
    return pids


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def baseline(count: int, careful: bool) -> None:
    """What users write today: the Segment client's track() in a loop, then flush()."""
    from segment.analytics import Client

    client = Client(
        write_key=settings.BENCH_WRITE_KEY,
        host=settings.BENCH_ENDPOINT,
        max_queue_size=count + 1 if careful else 10000,
    )
    profiles = Profile.objects.select_related("user", "account").order_by("pk")
    for profile in profiles.iterator(chunk_size=2000):
        properties = {name: getattr(profile, field) for name, field in PROPERTY_FIELDS.items()}
        client.track(
            user_id=profile.user.username,
            event="user_enriched",
            properties=properties,
            context={"groupId": profile.account.external_id},
            timestamp=profile.enriched_at,
        )
    client.flush()
    client.join()


def project(count: int) -> None:
    """``manage.py backfill_user_enriched`` as a user runs it (``--workers auto``: one
    process per CPU for a run this size on PostgreSQL)."""
    from django.core.management import call_command

    call_command("backfill_user_enriched", verbosity=0)


def project_one_process(count: int) -> None:
    """The same command held to one process, to show what the processes add."""
    from django.core.management import call_command

    call_command("backfill_user_enriched", "--workers", "1", verbosity=0)


def segment_sink(*args: str, gzip_level: int | None = None, sink: str = "segment") -> None:
    """The same command with ``SINK = "segment"``, posting to the receiver's ``/v1/batch``
    with the sink's defaults (gzip on): the Segment sink against the ThriveStack one.
    ``gzip_level`` replaces the sink's compression level (0: no gzip at all); ``sink``
    another Segment sink class (the one posting through the official client)."""
    from django.core.management import call_command
    from django.test import override_settings

    from tracking_adapter.sinks import segment

    options: dict[str, Any] = {
        "write_key": settings.BENCH_WRITE_KEY,
        "host": settings.BENCH_ENDPOINT,
    }
    if gzip_level == 0:
        options["gzip"] = False
    elif gzip_level is not None:
        segment.GZIP_LEVEL = gzip_level  # read at each post; the forked workers inherit it
    tracking = {**settings.TRACKING_ADAPTER, "SINK": sink, "SINK_OPTIONS": options}
    with override_settings(TRACKING_ADAPTER=tracking):
        call_command("backfill_user_enriched", *args, verbosity=0)


def floor(count: int) -> None:
    """Raw cursor, the same JSON, the same batch size, no validation, no bookkeeping."""
    import requests

    columns = ", ".join(f"p.{field}" for field in PROPERTY_FIELDS.values())
    query = (
        f"SELECT u.username, a.external_id, p.enriched_at, {columns} FROM profiles_profile p "
        "JOIN auth_user u ON u.id = p.user_id JOIN profiles_account a ON a.id = p.account_id "
        "ORDER BY p.id"
    )
    names = list(PROPERTY_FIELDS)
    # JSON columns come back from the driver as text (Django decodes them in the field):
    # decode them too, or the floor would post a list as a string.
    json_names = [
        name
        for name, field in PROPERTY_FIELDS.items()
        if Profile._meta.get_field(field).get_internal_type() == "JSONField"
    ]
    session = requests.Session()
    session.headers.update(
        {"x-api-key": settings.BENCH_API_KEY, "Content-Type": "application/json"}
    )
    url = f"{settings.BENCH_ENDPOINT}/api/track"
    with transaction.atomic(), connection.connection.cursor(name="floor") as cursor:
        cursor.itersize = 1000
        cursor.execute(query)
        while rows := cursor.fetchmany(1000):
            items = []
            for username, group, enriched_at, *values in rows:
                properties = dict.fromkeys(ALL_PROPERTIES, "")
                properties["enrichment_phone"] = []
                properties.update(zip(names, values, strict=True))
                for name in json_names:
                    if properties[name] is not None:
                        properties[name] = json.loads(properties[name])
                items.append(
                    {
                        "user_id": username,
                        "event_name": "user_enriched",
                        "properties": properties,
                        "context": {"group_id": group},
                        "timestamp": enriched_at.strftime("%Y-%m-%dT%H:%M:%S.")
                        + f"{enriched_at.microsecond // 1000:03d}Z",
                    }
                )
            body = json.dumps(items, separators=(",", ":"), ensure_ascii=False).encode()
            session.post(url, data=body, timeout=30).raise_for_status()


CONTENDERS: dict[str, Callable[[int], None]] = {
    "baseline-default": lambda n: baseline(n, careful=False),
    "baseline-careful": lambda n: baseline(n, careful=True),
    "project": project,
    "project-1-process": project_one_process,
    "segment": lambda n: segment_sink(),
    "segment-1-process": lambda n: segment_sink("--workers", "1"),
    # Not run by default: the compression levels, one process each.
    **{
        f"segment-1-process-gzip{level}": lambda n, level=level: segment_sink(
            "--workers", "1", gzip_level=level
        )
        for level in (0, 1, 6, 9)
    },
    # Not run by default: the sink as it was before its encoder (json.dumps of
    # to_segment(), gzip level 6), and the official client's request.post in its place.
    "segment-plain": lambda n: segment_sink(
        gzip_level=6, sink="bench.segment_client.PlainEncodeSink"
    ),
    "segment-1-process-plain": lambda n: segment_sink(
        "--workers", "1", gzip_level=6, sink="bench.segment_client.PlainEncodeSink"
    ),
    "segment-1-process-client-post": lambda n: segment_sink(
        "--workers", "1", sink="bench.segment_client.ClientPostSink"
    ),
    "floor": floor,
}


def main() -> None:
    name, count = sys.argv[1], int(sys.argv[2])
    started = time.perf_counter()
    cpu_before = cpu_seconds()
    with TreeMemory() as memory:
        CONTENDERS[name](count)
    result: dict[str, Any] = {
        "name": name,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": cpu_seconds() - cpu_before,
        "peak_pss_mb": memory.peak_mb,
        "peak_rss_mb": peak_rss_mb(),
        "workers_peak_rss_mb": workers_peak_rss_mb(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

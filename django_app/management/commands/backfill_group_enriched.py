"""``manage.py backfill_group_enriched``: send ``group_enriched`` for existing accounts, once
each, from ``TRACKING_ADAPTER["SOURCES"]["group_enriched"]``.

The same command as ``backfill_user_enriched`` with the same options, ``--group-id``
in place of ``--user-id``: safe to interrupt and to re-run.
"""

from __future__ import annotations

from django_app.management.commands import backfill_user_enriched
from tracking_adapter import GROUP_EVENT_NAME


class Command(backfill_user_enriched.Command):
    event = GROUP_EVENT_NAME
    help = (
        "Send group_enriched for existing accounts of "
        "TRACKING_ADAPTER['SOURCES']['group_enriched'] (or --model), skipping accounts whose "
        "current content was already sent."
    )

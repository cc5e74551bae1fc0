"""``user_enriched``: send it after your code enriches a user; the app records the event.

    from django_app.signals import user_enriched

    user_enriched.send(sender=Profile, instance=profile)
    user_enriched.send(sender=Profile, instance=profile, provider="clearbit", payload=person)
    user_enriched.send(sender=None, user_id="u_1", group_id="acct_9", properties={...})

Keyword arguments (all optional, but the event needs a user id and a group id from
somewhere: the instance through ``SOURCE`` paths, or ``user_id=``/``group_id=``):

- ``instance``: the enriched object; ``SOURCE``'s USER_ID/GROUP_ID/TIMESTAMP paths and,
  unless overridden, its property mapping are applied to it;
- ``properties``: a mapping of ``enrichment_*`` (and extra) properties, used as given;
- ``provider`` + ``payload``: a provider preset ("clearbit", "apollo", "pdl") and its JSON;
- ``user_id``, ``group_id``, ``timestamp``: explicit values that win over the mapping;
- ``force``: record even if the same content was already recorded for this user.

Sending never raises because of tracking: invalid data is kept as a dead outbox row with
the reason, and configuration problems are logged (and reported by ``manage.py check``).
"""

from __future__ import annotations

from django.dispatch import Signal

user_enriched = Signal()

group_enriched = Signal()
"""``group_enriched``: send it after your code enriches an account (a company, a team).

    from django_app.signals import group_enriched

    group_enriched.send(sender=Account, instance=account)
    group_enriched.send(sender=Account, instance=account, provider="clearbit", payload=company)
    group_enriched.send(sender=None, group_id="acct_9", user_id="u_1", properties={...})

The same keyword arguments as ``user_enriched``, applied through
``TRACKING_ADAPTER["SOURCES"]["group_enriched"]``; the presets are the company ones
(``from_clearbit_company``, ``from_apollo_organization``, ``from_pdl_company``). The event is
about ``group_id``; ``user_id`` is the user it is attributed to (ThriveStack requires one).
"""

SIGNALS = {"user_enriched": user_enriched, "group_enriched": group_enriched}
"""The signal of each event kind that has one."""

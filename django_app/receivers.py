"""Signal receivers: the ``user_enriched`` signal and automatic change detection on SOURCE.

Change detection is cheap on purpose: when an instance of the source model is loaded, the
raw values of the fields the mapping reads are remembered; a save that changed none of
them does no work at all. Otherwise the event is built and the ledger decides whether its
content is new for the user.

The remembered values are what was last *committed*: a save updates them only once its
transaction commits. Until then (and for good after a rollback, which Django does not
announce) the instance is marked unsettled, and its saves skip the shortcut and ask the
ledger, which is transactional and so always right: a second save in the same transaction
(a change, then a change back) or a save after a savepoint rolled back is judged against
what the database really holds.
"""

from __future__ import annotations

import copy
from typing import Any

from django.db import models, transaction
from django.db.models.signals import post_init, post_save

from django_app.api import track_enrichment
from django_app.runtime import get_source
from django_app.signals import user_enriched

_SNAPSHOT = "_tracking_adapter_snapshot"
# Set while a save of the instance is not known to be committed: the snapshot can't be trusted.
_UNSETTLED = "_tracking_adapter_unsettled"
_DISPATCH_UID = "django_app.source"


def on_user_enriched(sender: Any, instance: Any = None, **kwargs: Any) -> None:
    kwargs.pop("signal", None)
    force = bool(kwargs.pop("force", False))
    track_enrichment(instance, force=force, **kwargs)


_MUTABLE = (dict, list, set, bytearray)


def _snapshot(instance: models.Model, fields: frozenset[str]) -> dict[str, Any]:
    values = instance.__dict__
    # Copies of mutable values, so a JSON payload edited in place still compares as changed.
    return {
        name: copy.deepcopy(value) if isinstance(value := values.get(name), _MUTABLE) else value
        for name in fields
    }


def on_source_init(sender: type[models.Model], instance: models.Model, **_kwargs: Any) -> None:
    source = get_source()
    if source is not None and source.watched_fields is not None:
        instance.__dict__[_SNAPSHOT] = _snapshot(instance, source.watched_fields)


def on_source_save(
    sender: type[models.Model],
    instance: models.Model,
    created: bool,
    raw: bool = False,
    update_fields: frozenset[str] | None = None,
    using: str | None = None,
    **_kwargs: Any,
) -> None:
    if raw:  # loaddata: fixtures are not enrichment
        return
    source = get_source()
    if source is None:
        return
    saved_only = _attnames(sender, update_fields) if update_fields is not None else None
    target: models.Model = instance
    if source.watched_fields is not None:
        state = instance.__dict__
        before = state.get(_SNAPSHOT)
        # An earlier save of this instance is uncommitted or was rolled back: the snapshot
        # may not be what the database holds, so neither skip nor merge with it.
        unsettled = state.get(_UNSETTLED, False)
        current = _snapshot(instance, source.watched_fields)
        if saved_only is not None and (unsettled or before is None):
            target = _reloaded(sender, instance, using)
            stored = _snapshot(target, source.watched_fields)
        else:
            # What the database now holds: everything, or only the fields this save wrote.
            stored = (
                current
                if saved_only is None or before is None
                else {
                    name: current[name] if name in saved_only else before[name] for name in current
                }
            )
            if stored != current:
                target = _reloaded(sender, instance, using)  # don't report unsaved values
        # Remember it only once it is committed: after a rollback the change is still new.
        state[_UNSETTLED] = True
        transaction.on_commit(lambda: _settle(state, stored), using=using)
        if not created and not unsettled and before == stored:
            return
    elif saved_only is not None:
        target = _reloaded(sender, instance, using)
    track_enrichment(target, skip_empty=True)


def _settle(state: dict[str, Any], stored: dict[str, Any]) -> None:
    """A save committed: the database holds ``stored`` (a later committed save may follow)."""
    state[_SNAPSHOT] = stored
    state.pop(_UNSETTLED, None)


def _attnames(model: type[models.Model], names: frozenset[str]) -> frozenset[str]:
    attnames = set()
    for name in names:
        try:
            attnames.add(getattr(model._meta.get_field(name), "attname", name))
        except Exception:
            attnames.add(name)
    return frozenset(attnames)


def _reloaded(model: type[models.Model], instance: models.Model, using: str | None) -> models.Model:
    """The row as stored, for a partial save (``update_fields``) that left other edits unsaved."""
    return model._base_manager.using(using).get(pk=instance.pk)


_connected: list[type[models.Model]] = []


def connect() -> None:
    """Connect the receivers; called from AppConfig.ready() and when settings change.

    A broken SOURCE setting connects nothing: ``manage.py check`` and the startup log
    report it, and saves go on untouched.
    """
    user_enriched.connect(on_user_enriched, dispatch_uid="django_app.user_enriched")
    disconnect_source()
    try:
        source = get_source()
    except Exception:
        return
    if source is None:
        return
    post_init.connect(on_source_init, sender=source.model, dispatch_uid=_DISPATCH_UID)
    post_save.connect(on_source_save, sender=source.model, dispatch_uid=_DISPATCH_UID)
    _connected.append(source.model)


def disconnect_source() -> None:
    while _connected:
        model = _connected.pop()
        post_init.disconnect(sender=model, dispatch_uid=_DISPATCH_UID)
        post_save.disconnect(sender=model, dispatch_uid=_DISPATCH_UID)

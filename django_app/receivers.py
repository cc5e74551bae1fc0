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
from django_app.signals import SIGNALS

_SNAPSHOT = "_tracking_adapter_snapshot"
# Set while a save of the instance is not known to be committed: the snapshot can't be trusted.
_UNSETTLED = "_tracking_adapter_unsettled"
_DISPATCH_UID = "django_app.source"


def _signal_receiver(event: str) -> Any:
    def on_enriched(sender: Any, instance: Any = None, **kwargs: Any) -> None:
        kwargs.pop("signal", None)
        force = bool(kwargs.pop("force", False))
        track_enrichment(instance, event=event, force=force, **kwargs)

    on_enriched.__name__ = on_enriched.__qualname__ = f"on_{event}"
    return on_enriched


# Module-level so the signals' weak references keep them alive.
_SIGNAL_RECEIVERS = {event: _signal_receiver(event) for event in SIGNALS}
on_user_enriched = _SIGNAL_RECEIVERS["user_enriched"]


_MUTABLE = (dict, list, set, bytearray)


def _snapshot(instance: models.Model, fields: frozenset[str]) -> dict[str, Any]:
    values = instance.__dict__
    # Copies of mutable values, so a JSON payload edited in place still compares as changed.
    return {
        name: copy.deepcopy(value) if isinstance(value := values.get(name), _MUTABLE) else value
        for name in fields
    }


def _keys(event: str) -> tuple[str, str]:
    """Per event kind, so two sources on one model keep their own snapshots."""
    return (
        (_SNAPSHOT, _UNSETTLED)
        if event == "user_enriched"
        else (
            f"{_SNAPSHOT}_{event}",
            f"{_UNSETTLED}_{event}",
        )
    )


def on_source_init(
    sender: type[models.Model],
    instance: models.Model,
    *,
    event: str = "user_enriched",
    **_kwargs: Any,
) -> None:
    source = get_source(event)
    if source is not None and source.watched_fields is not None:
        instance.__dict__[_keys(event)[0]] = _snapshot(instance, source.watched_fields)


def on_source_save(
    sender: type[models.Model],
    instance: models.Model,
    created: bool,
    raw: bool = False,
    update_fields: frozenset[str] | None = None,
    using: str | None = None,
    *,
    event: str = "user_enriched",
    **_kwargs: Any,
) -> None:
    if raw:  # loaddata: fixtures are not enrichment
        return
    source = get_source(event)
    if source is None:
        return
    snapshot_key, unsettled_key = _keys(event)
    saved_only = _attnames(sender, update_fields) if update_fields is not None else None
    target: models.Model = instance
    if source.watched_fields is not None:
        state = instance.__dict__
        before = state.get(snapshot_key)
        # An earlier save of this instance is uncommitted or was rolled back: the snapshot
        # may not be what the database holds, so neither skip nor merge with it.
        unsettled = state.get(unsettled_key, False)
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
        state[unsettled_key] = True
        transaction.on_commit(lambda: _settle(state, stored, event), using=using)
        if not created and not unsettled and before == stored:
            return
    elif saved_only is not None:
        target = _reloaded(sender, instance, using)
    track_enrichment(target, event=event, skip_empty=True)


def _settle(state: dict[str, Any], stored: dict[str, Any], event: str) -> None:
    """A save committed: the database holds ``stored`` (a later committed save may follow)."""
    snapshot_key, unsettled_key = _keys(event)
    state[snapshot_key] = stored
    state.pop(unsettled_key, None)


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


# (model, dispatch uid, the receivers) of each connected source; the receivers are held
# here because Django's signals keep only weak references to them.
_connected: list[tuple[type[models.Model], str, Any, Any]] = []


def _source_receivers(event: str) -> tuple[Any, Any]:
    def on_init(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
        on_source_init(sender, instance, event=event, **kwargs)

    def on_save(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
        on_source_save(sender, instance, event=event, **kwargs)

    return on_init, on_save


def connect() -> None:
    """Connect the receivers; called from AppConfig.ready() and when settings change.

    A broken source setting connects nothing for that source: ``manage.py check`` and the
    startup log report it, and saves go on untouched.
    """
    for event, signal in SIGNALS.items():
        signal.connect(_SIGNAL_RECEIVERS[event], dispatch_uid=f"django_app.{event}")
    disconnect_source()
    sources = {}
    for event in _configured_events():
        try:
            source = get_source(event)
        except Exception:
            continue
        if source is not None:
            sources[event] = source
    for event, source in sources.items():
        uid = _DISPATCH_UID if event == "user_enriched" else f"{_DISPATCH_UID}.{event}"
        on_init, on_save = _source_receivers(event)
        post_init.connect(on_init, sender=source.model, dispatch_uid=uid)
        post_save.connect(on_save, sender=source.model, dispatch_uid=uid)
        _connected.append((source.model, uid, on_init, on_save))


def _configured_events() -> list[str]:
    from django_app.source import source_configs

    try:
        return list(source_configs())
    except Exception:
        return []


def disconnect_source() -> None:
    while _connected:
        model, uid, _on_init, _on_save = _connected.pop()
        post_init.disconnect(sender=model, dispatch_uid=uid)
        post_save.disconnect(sender=model, dispatch_uid=uid)

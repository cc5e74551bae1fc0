"""What happens after a commit that recorded events: the ``DISPATCH`` backends.

``DISPATCH`` is an alias (``inline``, ``worker``, ``celery``, ``tasks``) or the dotted path
of a ``Dispatcher`` subclass, chosen like sinks. Each backend says what it needs
(``problems()``, reported by ``manage.py check``) and never raises into the commit: the
events are in the outbox already, so a backend that fails only delays them until the next
delivery run (the worker, or the periodic sweep of a task engine). Backends that talk to a
broker or queue publish through a bounded nudge (``django_app.nudge``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from django.utils.module_loading import import_string

from django_app.conf import SETTING_NAME, app_settings
from tracking_adapter import ConfigurationError


class Dispatcher:
    """One delivery strategy. ``after_commit`` runs in the committing thread."""

    alias = ""
    wants_commit_hook = True  # False: nothing to do after a commit (a worker polls)

    def after_commit(self, ids: Sequence[int], using: str) -> None:
        raise NotImplementedError

    def problems(self) -> list[tuple[str, str]]:
        """(what is wrong, what to do) pairs for ``manage.py check``; empty when ready."""
        return []


class InlineDispatcher(Dispatcher):
    """Send right after the commit, in the committing thread, within INLINE_TIMEOUT in all."""

    alias = "inline"

    def after_commit(self, ids: Sequence[int], using: str) -> None:
        from django_app.dispatch import drain
        from django_app.runtime import get_inline_sink

        budget = float(app_settings.INLINE_TIMEOUT)
        drain(sink=get_inline_sink(), ids=list(ids), using=using, budget=budget)


class WorkerDispatcher(Dispatcher):
    """Nothing after the commit: ``manage.py deliver_events`` polls the outbox."""

    alias = "worker"
    wants_commit_hook = False

    def after_commit(self, ids: Sequence[int], using: str) -> None:
        return None


def _missing(module: str, extra: str) -> list[tuple[str, str]]:
    if importlib.util.find_spec(module) is not None:
        return []
    return [(f"{module} is not installed", f"pip install 'tracking-adapter[{extra}]'")]


class CeleryDispatcher(Dispatcher):
    """Enqueue the Celery task ``django_app.deliver_outbox`` (see ``django_app.tasks``)."""

    alias = "celery"

    def after_commit(self, ids: Sequence[int], using: str) -> None:
        from django_app.tasks import enqueue_delivery

        enqueue_delivery()

    def problems(self) -> list[tuple[str, str]]:
        return _missing("celery", "celery")


class TasksDispatcher(Dispatcher):
    """Enqueue ``django_app.django_tasks.deliver_outbox`` on Django's Tasks framework
    (``django.tasks`` from Django 6.0, the ``django-tasks`` backport before), on the backend
    TASKS_BACKEND names and the queue TASKS_QUEUE names."""

    alias = "tasks"

    def after_commit(self, ids: Sequence[int], using: str) -> None:
        from django_app.django_tasks import enqueue_delivery

        enqueue_delivery()

    def problems(self) -> list[tuple[str, str]]:
        if importlib.util.find_spec("django.tasks") is None and not _has("django_tasks"):
            return [
                (
                    "neither django.tasks (Django 6.0+) nor the django-tasks backport is installed",
                    "pip install 'tracking-adapter[tasks]' (or upgrade to Django 6.0)",
                )
            ]
        from django_app.django_tasks import backend_problem

        problem = backend_problem()
        return [problem] if problem else []


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


DISPATCHER_ALIASES: dict[str, type[Dispatcher]] = {
    cls.alias: cls
    for cls in (InlineDispatcher, WorkerDispatcher, CeleryDispatcher, TasksDispatcher)
}


def dispatcher_class(
    spec: object, *, setting: str = f"{SETTING_NAME}['DISPATCH']"
) -> type[Dispatcher]:
    if isinstance(spec, str) and spec in DISPATCHER_ALIASES:
        return DISPATCHER_ALIASES[spec]
    if isinstance(spec, str) and "." in spec:
        try:
            found = import_string(spec)
        except ImportError as exc:
            raise ConfigurationError(f"{setting} {spec!r} cannot be imported: {exc}") from None
        if isinstance(found, type) and issubclass(found, Dispatcher):
            return found
        raise ConfigurationError(f"{setting} {spec!r} is not a Dispatcher subclass")
    raise ConfigurationError(
        f"{setting} is {spec!r}; choose one of {', '.join(DISPATCHER_ALIASES)} or the dotted "
        "path of a django_app.dispatchers.Dispatcher subclass"
    )

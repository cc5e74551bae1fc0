"""DISPATCH "tasks": delivery through Django's Tasks framework (the django-tasks backport on
Django 5.2), with the immediate backend and with django-tasks-db's database queue and a
real ``db_worker`` process."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from typing import Any

import pytest
from django.db import transaction

from django_app.checks import check_settings
from django_app.models import OutboxEvent, Status
from tests.conftest import IN_CI
from tests.django.helpers import REPO, make_profile, thrivestack_to, worker_env

if importlib.util.find_spec("django_tasks_db") is None:
    if IN_CI:
        raise RuntimeError("django-tasks-db is not installed (required under CI=true)")
    pytest.skip("django-tasks and django-tasks-db are not installed", allow_module_level=True)

pytestmark = pytest.mark.django_db(transaction=True)

IMMEDIATE = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}


def queued() -> int:
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.filter(status="READY").count()


def wait_until(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_the_immediate_backend_delivers_when_the_transaction_commits(settings, receiver):
    settings.TASKS = IMMEDIATE
    settings.TRACKING_ADAPTER = thrivestack_to(receiver, DISPATCH="tasks")
    with transaction.atomic():
        make_profile(city="Pune")
        assert receiver.item_count == 0  # not before the commit
    assert receiver.item_count == 1
    assert OutboxEvent.objects.get().status == Status.DELIVERED
    with pytest.raises(RuntimeError), transaction.atomic():
        make_profile(city="Nowhere")
        raise RuntimeError("rolled back")
    assert receiver.item_count == 1


def test_the_database_queue_and_its_db_worker_deliver_what_committed(settings, receiver):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver, DISPATCH="tasks", NUDGE_TIMEOUT=2.0)
    with transaction.atomic():
        committed = make_profile(city="Pune")
    with pytest.raises(RuntimeError), transaction.atomic():
        make_profile(city="Nowhere")
        raise RuntimeError("rolled back")
    assert wait_until(lambda: queued() == 1, 5)  # the nudge, one task for the commit
    assert receiver.item_count == 0  # nothing is sent until a worker runs the task

    worker = subprocess.run(
        [sys.executable, "-m", "django", "db_worker", "--batch", "--no-startup-delay"],
        env=worker_env(receiver),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 0, worker.stderr[-2000:]
    assert receiver.item_count == 1
    assert receiver.items[0]["user_id"] == committed.tracking_user_id
    assert OutboxEvent.objects.get().status == Status.DELIVERED
    assert queued() == 0


def test_a_queue_setting_puts_the_task_on_that_queue(settings, receiver):
    from django_tasks_db.models import DBTaskResult

    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["tracking"]}
    }
    settings.TRACKING_ADAPTER = thrivestack_to(
        receiver, DISPATCH="tasks", TASKS_QUEUE="tracking", NUDGE_TIMEOUT=2.0
    )
    make_profile(city="Pune")
    assert wait_until(lambda: queued() == 1, 5)
    assert DBTaskResult.objects.get().queue_name == "tracking"


def test_check_names_an_undefined_tasks_backend(settings):
    settings.TRACKING_ADAPTER = {**settings.TRACKING_ADAPTER, "DISPATCH": "tasks"}
    assert [m for m in check_settings() if m.is_serious()] == []
    settings.TRACKING_ADAPTER = {
        **settings.TRACKING_ADAPTER,
        "DISPATCH": "tasks",
        "TASKS_BACKEND": "queue",
    }
    [message] = [m for m in check_settings() if m.is_serious()]
    assert message.id == "tracking_adapter.E008"
    assert "'queue'" in message.msg
    assert "settings.TASKS" in message.msg


def test_check_names_a_queue_the_backend_does_not_serve(settings):
    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}
    }
    settings.TRACKING_ADAPTER = {
        **settings.TRACKING_ADAPTER,
        "DISPATCH": "tasks",
        "TASKS_QUEUE": "tracking",
    }
    [message] = [m for m in check_settings() if m.is_serious()]
    assert message.id == "tracking_adapter.E008"
    assert "QUEUES" in (message.hint or "")


def test_an_unknown_dispatch_is_e007_with_a_suggestion(settings):
    settings.TRACKING_ADAPTER = {**settings.TRACKING_ADAPTER, "DISPATCH": "task"}
    [message] = [m for m in check_settings() if m.is_serious()]
    assert message.id == "tracking_adapter.E007"
    assert "'tasks'" in (message.hint or "")

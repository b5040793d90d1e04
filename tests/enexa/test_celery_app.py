"""Enexa's Celery app: its own broker whatever Amperio's variable says, configured before any
request thread enqueues, and a beat schedule whose runs expire before the next."""

import os
import subprocess
import sys

import pytest
from django.conf import settings

from enexa.celery import app, beat_schedule


def test_enexas_worker_and_producers_ignore_amperios_celery_broker_url(monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://amperio-broker.invalid:6379/1")
    # The test settings name kombu's in-memory transport as ENEXA_CELERY_BROKER_URL.
    assert app.connection_for_write().as_uri().startswith("memory://")
    assert app.connection_for_read().as_uri().startswith("memory://")


def test_every_periodic_task_expires_before_its_next_run_and_names_a_real_task():
    import enexa.alerts.tasks  # noqa: F401 - registers the tasks
    import enexa.dispatch.tasks  # noqa: F401
    import enexa.optimizer.tasks  # noqa: F401
    import enexa.telemetry.tasks  # noqa: F401
    import enexa.webhooks.tasks  # noqa: F401

    for name, entry in beat_schedule().items():
        schedule = entry["schedule"]
        every_s = schedule if isinstance(schedule, float) else 86400.0  # the daily crontab
        assert 0 < entry["options"]["expires"] <= every_s, name
        assert entry["task"] in app.tasks, name


def test_a_web_process_has_its_broker_configured_before_any_request_thread_enqueues():
    # A fresh interpreter, as a gunicorn worker: Celery used to load its configuration on the
    # first enqueue, where two request threads racing could leave the whole process on Celery's
    # default broker (amqp://localhost) and every delivery it enqueued lost.
    script = (
        "import django; django.setup(); from enexa.celery import app; "
        "print(app.configured, app.conf.broker_write_url)"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "enexa.settings.dev",
            "ENEXA_CELERY_BROKER_URL": "redis://enexa-broker.invalid:6379/5",
            "PYTHONPATH": str(settings.BASE_DIR),
        },
    )
    assert done.stdout.split() == ["True", "redis://enexa-broker.invalid:6379/5"]


@pytest.mark.django_db(transaction=True)
def test_the_worker_keeps_a_threads_database_connection_from_one_task_to_the_next():
    # Celery's Django fixup closed every connection around every task: each delivery to
    # Amperio began by opening a new PostgreSQL connection.
    from celery import signals
    from celery.fixups.django import DjangoWorkerFixup
    from django.db import connection

    from enexa.dispatch.tasks import deliver_command

    fixup = DjangoWorkerFixup(app).install()  # what the worker installs at start
    around = [(signals.task_prerun, fixup.on_task_prerun)]
    around.append((signals.task_postrun, fixup.on_task_postrun))
    try:
        connection.ensure_connection()
        kept = connection.connection

        def run_a_task() -> None:
            signals.task_prerun.send(sender=deliver_command, task_id="t", task=deliver_command)
            signals.task_postrun.send(sender=deliver_command, task_id="t", task=deliver_command)

        run_a_task()
        assert connection.connection is kept
        # One an error left unusable is closed, and the next query opens a new one.
        connection.errors_occurred = True
        connection.connection.close()
        run_a_task()
        assert connection.connection is None
    finally:
        for signal, handler in around:
            signal.disconnect(handler)
        signals.worker_process_init.disconnect(fixup.on_worker_process_init)
        signals.beat_embedded_init.disconnect(fixup.close_database)

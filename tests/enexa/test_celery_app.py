"""Enexa's Celery app: its own broker whatever Amperio's variable says, and a beat schedule
whose runs expire before the next."""

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

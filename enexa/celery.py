"""Enexa's Celery app: delivery to Amperio on the queue enexa.delivery, periodic work on
enexa.periodic, webhook deliveries on enexa.webhooks, and beat's schedule (see docs/operations.md).

The broker is ENEXA_CELERY_BROKER_URL (Redis or RabbitMQ), else an embedded broker with no
server in <ENEXA_VAR_DIR>/broker. Results are not kept: commands, their delivery attempts and
outage reports are the record. Start:

    celery -A enexa.celery worker -n enexa@%h
    celery -A enexa.celery beat
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from celery import Celery, signals
from celery.schedules import crontab
from kombu import Exchange, Queue

from shared.logs import connect_task_signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "enexa.settings.dev")

DELIVERY_QUEUE = "enexa.delivery"
PERIODIC_QUEUE = "enexa.periodic"
# Webhook deliveries apart: receivers that answer slowly never hold up commands to Amperio.
WEBHOOK_QUEUE = "enexa.webhooks"
QUEUES = (DELIVERY_QUEUE, PERIODIC_QUEUE, WEBHOOK_QUEUE)
# Beat cadence, in seconds. Offline detection stays well inside ENEXA_OFFLINE_AFTER_S (120).
OFFLINE_EVERY_S = 30.0
RECONCILE_EVERY_S = 30.0
REDELIVER_EVERY_S = 30.0
PULL_STATUS_EVERY_S = 15.0
ALERTS_EVERY_S = 30.0
WEBHOOK_SWEEP_EVERY_S = 30.0
# Aggregates lag the readings by at most this (a chart read refreshes its own range at once).
AGGREGATES_EVERY_S = 10.0
PARTITIONS_EVERY_S = 3600.0
GATEWAY_HEALTH_EVERY_S = 30.0


def every(task: str, interval_s: float, queue: str = PERIODIC_QUEUE) -> dict[str, Any]:
    """A periodic task that expires before its next run: a worker that was down never works
    through a backlog of stale cycles."""
    return {
        "task": task,
        "schedule": interval_s,
        "options": {"queue": queue, "expires": interval_s},
    }


def beat_schedule() -> dict[str, Any]:
    from django.conf import settings

    prune = every("enexa.telemetry.tasks.prune_telemetry", 3600.0)
    prune["schedule"] = crontab(hour=3, minute=15)  # daily, expiring within the hour
    prune_plans = every("enexa.optimizer.tasks.prune_plans", 3600.0)
    prune_plans["schedule"] = crontab(hour=3, minute=45)
    return {
        "detect-offline": every("enexa.telemetry.tasks.detect_offline", OFFLINE_EVERY_S),
        "reconcile-outages": every("enexa.telemetry.tasks.reconcile_outages", RECONCILE_EVERY_S),
        "redeliver-commands": every(
            "enexa.dispatch.tasks.redeliver_commands", REDELIVER_EVERY_S, DELIVERY_QUEUE
        ),
        "pull-command-status": every(
            "enexa.dispatch.tasks.pull_command_status", PULL_STATUS_EVERY_S, DELIVERY_QUEUE
        ),
        "refresh-aggregates": every("enexa.telemetry.tasks.refresh_aggregates", AGGREGATES_EVERY_S),
        "create-partitions": every("enexa.telemetry.tasks.create_partitions", PARTITIONS_EVERY_S),
        # It calls Amperio: on the delivery queue, with the other work that does.
        "poll-gateway-health": every(
            "enexa.telemetry.tasks.poll_gateway_health", GATEWAY_HEALTH_EVERY_S, DELIVERY_QUEUE
        ),
        "prune-telemetry": prune,
        "evaluate-alerts": every("enexa.alerts.tasks.evaluate_alerts", ALERTS_EVERY_S),
        "send-due-webhooks": every(
            "enexa.webhooks.tasks.send_due_deliveries", WEBHOOK_SWEEP_EVERY_S, WEBHOOK_QUEUE
        ),
        # Model-predictive control: controlled sites re-planned on a schedule, and sooner when
        # the measured SOC leaves the plan (enexa.optimizer).
        "replan-sites": every(
            "enexa.optimizer.tasks.replan_due_sites", settings.ENEXA_OPTIMIZER_REPLAN_INTERVAL_S
        ),
        "check-soc-drift": every(
            "enexa.optimizer.tasks.check_soc_drift", settings.ENEXA_OPTIMIZER_DRIFT_CHECK_S
        ),
        "prune-plans": prune_plans,
    }


def configuration() -> dict[str, Any]:
    """The app's settings, read from Django's settings when Celery first needs them."""
    from django.conf import settings

    from enexa import broker

    var_dir = Path(settings.VAR_DIR)
    conf: dict[str, Any] = (
        {"broker_url": settings.ENEXA_CELERY_BROKER_URL}
        if settings.ENEXA_CELERY_BROKER_URL
        else {
            **broker.embedded(var_dir / "broker"),
            # Remote control needs broadcast queues the file broker handles poorly.
            "worker_enable_remote_control": False,
        }
    )
    return {
        **conf,
        # Celery's broker_url prefers CELERY_BROKER_URL from the environment to any
        # configuration, and that variable names Amperio's broker; the read and write URLs,
        # set here, are what connections use, so Enexa's broker holds whatever it says.
        "broker_read_url": conf["broker_url"],
        "broker_write_url": conf["broker_url"],
        "task_default_queue": DELIVERY_QUEUE,
        "task_routes": {
            "enexa.webhooks.tasks.*": {"queue": WEBHOOK_QUEUE},
            "enexa.alerts.tasks.*": {"queue": PERIODIC_QUEUE},
        },
        "task_queues": [Queue(name, Exchange(name), routing_key=name) for name in QUEUES],
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
        "beat_schedule": beat_schedule(),
        "beat_schedule_filename": str(var_dir / "celerybeat-schedule"),
        "timezone": "UTC",
        # Celery's Django fixup closes every database connection before and after each task
        # unless this is set: each delivery then opened a new PostgreSQL connection (a server
        # process forked, a third of a delivery's CPU). Connections are kept as a web process
        # keeps them instead (reuse_connections below).
        "CELERY_DB_REUSE_MAX": sys.maxsize,
    }


def reuse_connections(sender: Any = None, **_: Any) -> None:
    """Before and after each of this app's tasks, as Django does around each request: a
    connection past CONN_MAX_AGE, or one an error left unusable (a restarted database), is
    closed and the next query opens a new one; the rest are kept for the thread's next task.
    Not for a task run eagerly inside a caller's transaction (as Celery's fixup)."""
    if getattr(sender, "app", None) is not app or getattr(sender.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


app = Celery("enexa")
# A task enqueued by a request runs with the request's id on its log lines.
connect_task_signals(signals, os.environ.get("ENEXA_LOG_FORMAT", "plain"))
app.add_defaults(configuration)
signals.task_prerun.connect(reuse_connections, weak=False)
signals.task_postrun.connect(reuse_connections, weak=False)
app.autodiscover_tasks()

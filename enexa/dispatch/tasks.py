"""Dispatch's Celery tasks: deliver a command to Amperio, redeliver, pull command outcomes."""

from __future__ import annotations

import logging

from celery import Task

from enexa.celery import app

from . import services

logger = logging.getLogger(__name__)


# Late acknowledgement: a worker lost mid-delivery leaves the message for another; delivering
# twice is harmless, since Amperio keys on command_id and a delivered command is skipped here.
@app.task(bind=True, acks_late=True, max_retries=None)
def deliver_command(self: Task, command_id: str) -> None:
    """POST one stored command to Amperio; a transient failure retries with backoff."""
    countdown = services.retry_countdown_s(services.deliver_by_id(command_id), self.request.retries)
    if countdown is not None:
        logger.info("dispatch %s: next try in %.1f s", command_id, countdown)
        raise self.retry(countdown=countdown)


@app.task
def redeliver_commands() -> dict[str, int]:
    """Beat: every still-valid undelivered command, delivered; the stale ones expired."""
    return services.redeliver_undelivered()


@app.task
def pull_command_status() -> dict[str, int]:
    """Beat: the outcome of each command Amperio holds open, recorded on the command."""
    return services.pull_open_statuses()

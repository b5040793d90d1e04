"""Webhooks' Celery tasks (queue enexa.webhooks): send one delivery attempt, the sweep of
deliveries whose next attempt is due, and the fan-out of a retry by hand."""

from __future__ import annotations

from enexa.celery import app

from . import services


# Late acknowledgement: a worker lost mid-attempt leaves the message for another, and the
# claim on (delivery, attempt number) makes a repeated task a no-op.
@app.task(acks_late=True)
def send_delivery(code: str, attempts_done: int) -> str | None:
    """Attempt the delivery `code` (its attempt number attempts_done + 1) and schedule the next."""
    return services.send_delivery(code, attempts_done)


@app.task
def send_due_deliveries() -> int:
    """Beat: enqueue the deliveries whose next attempt is due."""
    return services.send_due()


@app.task
def send_requeued(attempts: list[list]) -> int:
    """Queue the next attempt of each [delivery code, attempts done] a retry by hand made
    pending: the fan-out of a bulk retry runs here, not in the web request."""
    services.enqueue_attempts([(code, done) for code, done in attempts])
    return len(attempts)

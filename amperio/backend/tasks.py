"""The backend's Celery tasks on queue `amperio.backend`: what the gateways report.

Run by `python -m amperio backend-worker` (with AMPERIO_DATABASE_URL), on the backend's host."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from amperio.backend.store import BackendStore
from amperio.celery import app
from amperio.settings import get_settings
from shared.fields import parse_timestamp


@lru_cache(maxsize=1)
def store() -> BackendStore:
    return BackendStore(get_settings().database_url)


# Late ack: an outcome is recorded once whatever the redeliveries (a final status stays).
@app.task(name="amperio.backend.record_outcome", ignore_result=True, acks_late=True)
def record_outcome(site_id: str, outcome: dict[str, Any]) -> bool:
    return store().record_outcome(site_id, outcome, datetime.now(UTC))


@app.task(name="amperio.backend.record_report", ignore_result=True)
def record_report(
    site_id: str, at: str, limits: dict[str, Any] | None, health: dict[str, Any]
) -> None:
    moment = parse_timestamp(at) or datetime.now(UTC)
    store().record_report(site_id, moment, limits, health)

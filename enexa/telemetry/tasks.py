"""Telemetry's Celery tasks: offline detection, outage recovery and reconciliation, the gateway
health poll, the aggregates' refresh, daily partitions created ahead, retention."""

from __future__ import annotations

from enexa.celery import app

from . import aggregates, outages, partitions, presence, queries, reports


@app.task
def recover_after_outage(report_id: int) -> None:
    """A site is back: sync its state with Amperio, redeliver its commands, reconcile."""
    outages.recover_site_by_id(report_id)


@app.task
def detect_offline() -> list[str]:
    """Beat: mark offline every site silent past ENEXA_OFFLINE_AFTER_S."""
    return presence.mark_offline_sites()


@app.task
def reconcile_outages() -> int:
    """Beat: recompute the outage reports within the raw retention."""
    return outages.reconcile_outages()


@app.task
def poll_gateway_health() -> dict:
    """Beat: every site's gateway health from Amperio's `GET /v1/health`, stored."""
    return reports.poll_gateway_health()


@app.task
def prune_telemetry() -> dict[str, int]:
    """Beat, daily: roll old raw readings into hourly aggregates and apply the retentions."""
    return queries.prune_telemetry()


@app.task
def refresh_aggregates() -> int:
    """Beat, every few seconds: recompute the aggregates of the minutes ingest marked stale."""
    return aggregates.refresh_aggregates()


@app.task
def create_partitions() -> list[str]:
    """Beat, hourly: the readings' daily partitions from yesterday to AHEAD_DAYS ahead
    (PostgreSQL; nothing on SQLite)."""
    return [day.isoformat() for day in partitions.create_ahead()]

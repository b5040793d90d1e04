"""What the API does, callable without HTTP: accept a command, queue its task, gather health."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from amperio import health as site_health
from amperio import metrics
from amperio.api.audit import AuditLog
from amperio.backend import fleet
from amperio.backend.store import BackendStore
from amperio.dispatch.records import QUEUED
from amperio.dispatch.store import CommandStore
from amperio.enexa_link.configsync import operating_limits
from amperio.gateway import gateway_for
from amperio.settings import Settings
from amperio.state import GatewayState
from shared.dispatch import DispatchCommand
from shared.errors import SchemaError

logger = logging.getLogger(__name__)

APPLY_COMMAND_TASK = "amperio.tasks.apply_command"

# The process's handles come from the one registry, amperio.gateway (the workers' too).


def command_store(settings: Settings) -> CommandStore:
    # A command refused or expired on arrival is an outcome too: a `command` event.
    return gateway_for(settings).commands()


def outbox(settings: Settings) -> Any:
    return gateway_for(settings).outbox()


def audit_log(settings: Settings) -> AuditLog:
    return gateway_for(settings).handle("audit", lambda: AuditLog(settings.audit_path))


def gateway_state(settings: Settings) -> GatewayState:
    return gateway_for(settings).state


def applied_config(settings: Settings) -> dict[str, Any]:
    return gateway_for(settings).config()


def backend_store(settings: Settings) -> BackendStore:
    """The store shared by every replica (opened once per process)."""
    return gateway_for(settings).handle("backend", lambda: BackendStore(settings.database_url))


def publish(task: str, args: list[Any], queue: str) -> None:
    from amperio.celery import app

    app.send_task(task, args=args, queue=queue)


def accept_command(
    settings: Settings, data: Any, idempotency_key: str | None = None
) -> tuple[dict[str, Any], bool]:
    """Check and store a dispatched command, then queue its task. Returns (status record,
    created): from the shared store for every site it serves when AMPERIO_DATABASE_URL is set
    (amperio.backend), else from this gateway's command table.

    Raises SchemaError (400), UnknownSite (404), CommandError (400, limits), CommandConflict
    (422) and LimitsUnknown (503) from the store."""
    errors = screen_strings(data)
    if errors:
        raise SchemaError(errors)
    if isinstance(data, dict) and not data.get("command_id"):
        # The seed's example carries no id: such a command gets one (and is not idempotent).
        data = {**data, "command_id": idempotency_key or uuid.uuid4().hex}
    cmd = DispatchCommand.from_dict(data)
    if settings.database_url:
        return fleet.accept(backend_store(settings), settings.sites, cmd, publish)
    if cmd.site_id != settings.site_id:
        raise fleet.UnknownSite(f"This gateway serves {settings.site_id} only, not {cmd.site_id}.")
    record, created = command_store(settings).submit(
        cmd, operating_limits(applied_config(settings)), datetime.now(UTC)
    )
    if created and record.status == QUEUED:
        enqueue(settings, record.command_id)
    logger.info(
        "command %s for %s: %s (%s)",
        record.command_id,
        cmd.site_id,
        record.status,
        "new" if created else "replayed",
    )
    return record.to_dict(), created


def command_status(settings: Settings, command_id: str) -> dict[str, Any]:
    """`GET /v1/dispatch/{command_id}`; raises UnknownCommand."""
    if settings.database_url:
        return fleet.status_of(backend_store(settings), command_id)
    return command_store(settings).get(command_id).to_dict()


# Names of the dispatch's timestamp fields, at any depth (`valid_until`, `params.slots.0.end`).
TIMESTAMP_FIELDS = frozenset({"timestamp", "valid_until", "start", "end"})
LONE_SURROGATE = "Must not contain a lone UTF-16 surrogate (\\ud800-\\udfff)."
SURROGATE_IN_NAME = "Member names must not contain a lone UTF-16 surrogate."
OUT_OF_CALENDAR = "Out of range: the time in UTC falls outside years 1 to 9999."


def screen_strings(data: Any) -> dict[str, list[str]]:
    """Field errors the shared schema does not see: strings holding a lone UTF-16 surrogate
    (legal JSON, but no UTF-8 can store or echo them) and timestamps whose offset takes them
    past the calendar's ends on the way to UTC (`0001-01-01T00:00:00+01:00`)."""
    errors: dict[str, list[str]] = {}
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:  # the parser bounds the depth; no recursion all the same
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, child in value.items():
                if not _encodable(key):
                    errors.setdefault(path or "non_field_errors", []).append(SURROGATE_IN_NAME)
                    continue
                stack.append((f"{path}.{key}" if path else key, child))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}", child) for i, child in enumerate(value))
        elif isinstance(value, str):
            if not _encodable(value):
                errors[path] = [LONE_SURROGATE]
            elif path.rpartition(".")[2] in TIMESTAMP_FIELDS and _leaves_calendar(value):
                errors[path] = [OUT_OF_CALENDAR]
    return errors


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _leaves_calendar(value: str) -> bool:
    """A valid timestamp (as shared.fields reads it) that cannot be converted to UTC."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        if moment.tzinfo is not None:
            moment.astimezone(UTC)
    except ValueError:
        return False  # not a timestamp at all: the schema says so
    except OverflowError:
        return True
    return False


def enqueue(settings: Settings, command_id: str) -> bool:
    """Queue the command's task on the site's queue, after the record is stored.

    A broker that is down loses nothing: the record stays queued and the worker's
    `recover_lost` finishes or expires it."""
    try:
        from amperio.celery import app

        app.send_task(APPLY_COMMAND_TASK, args=[command_id], queue=settings.site_queue)
    except Exception:  # noqa: BLE001 - the command table, not the broker, is the truth
        logger.exception("command %s stored but not queued; recovery will pick it up", command_id)
        return False
    return True


def health(settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """`GET /v1/health`: every site the backend serves, or this gateway's own."""
    now = now or datetime.now(UTC)
    if settings.database_url:
        return fleet.fleet_health(
            backend_store(settings), settings.sites, settings.silent_after_s, now
        )
    return gateway_health(settings, now)


def gateway_health(settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """This gateway's own health (amperio.health, shared with its report to the backend)."""
    return site_health.gateway_health(gateway_for(settings), now)


def metrics_text(settings: Settings, now: datetime | None = None) -> bytes:
    """`GET /metrics`: the fleet backend's figures, or this gateway's (what its processes
    counted, and its stores' state, read now)."""
    if settings.database_url:
        store = backend_store(settings)
        health_view = fleet.fleet_health(
            store, settings.sites, settings.silent_after_s, now or datetime.now(UTC)
        )
        return metrics.render(metrics.FleetFigures(health_view, store.command_counts()))
    gw = gateway_for(settings)
    return metrics.render(
        metrics.GatewayFigures(
            gw.metrics(),
            lambda: site_health.buffer_depth(gw),
            gateway_state(settings).snapshot(),
            command_store(settings).status_counts,
            now,
        )
    )

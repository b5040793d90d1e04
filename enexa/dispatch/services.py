"""Issuing commands to Amperio, delivering them, and following their status."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from enexa.core.errors import DomainError, InvalidInput
from enexa.registry.models import Site
from shared.dispatch import DispatchCommand
from shared.errors import SchemaError
from shared.fields import format_timestamp

from .choices import CommandStatus
from .models import Command

logger = logging.getLogger(__name__)

_session = requests.Session()  # keep-alive to Amperio: dispatch latency matters


class CommandIdReused(DomainError):
    status = 422
    code = "command_id_reused"
    title = "Command id reused"


def _wire(
    site_code: str,
    command: str,
    params: dict,
    issued_at: datetime,
    command_id: str,
    valid_until: datetime | None,
) -> dict:
    """The `POST /v1/dispatch` body (validated by shared.dispatch.DispatchCommand)."""
    body = {
        "site_id": site_code,
        "command": command,
        "params": params,
        "timestamp": format_timestamp(issued_at),
        "command_id": command_id,
    }
    if valid_until is not None:
        body["valid_until"] = format_timestamp(valid_until)
    return body


def _payload(command: Command) -> dict:
    return _wire(
        command.site.code,
        command.command,
        command.params,
        command.issued_at,
        command.command_id,
        command.valid_until,
    )


def issue_command(
    *,
    site: Site,
    command: str,
    params: dict,
    created_by: str,
    valid_until: datetime | None = None,
    command_id: str | None = None,
    now: datetime | None = None,
) -> tuple[Command, bool]:
    """Store a command and try to deliver it. Returns (command, created).

    Replaying a command_id with the same command returns the first one; with a different one
    it is refused, never applied."""
    now = now or timezone.now()
    command_id = command_id or uuid.uuid4().hex
    raw = _wire(site.code, command, params, now, command_id, valid_until)
    try:
        parsed = DispatchCommand.from_dict(raw)
    except SchemaError as exc:
        raise InvalidInput("The command is invalid.", exc.errors) from exc
    existing = Command.objects.filter(command_id=command_id).select_related("site").first()
    if existing is not None:
        return _replay(existing, site, parsed), False
    try:
        with transaction.atomic():
            stored = Command.objects.create(
                command_id=command_id,
                site=site,
                command=parsed.command,
                params=parsed.params_dict(),
                issued_at=now,
                valid_until=parsed.valid_until,
                created_by=created_by,
            )
    except IntegrityError:  # the same id raced in from another request
        existing = Command.objects.select_related("site").get(command_id=command_id)
        return _replay(existing, site, parsed), False
    return deliver(stored, now=now), True


def _replay(existing: Command, site: Site, parsed: DispatchCommand) -> Command:
    if (
        existing.site_id != site.pk
        or existing.command != parsed.command
        or (existing.params != parsed.params_dict())
    ):
        raise CommandIdReused(f"command_id {existing.command_id} was used for another command.")
    return existing


def _expired(command: Command, now: datetime) -> bool:
    """Past its valid_until: never to be delivered any more."""
    return command.valid_until is not None and command.valid_until <= now


def deliver(command: Command, *, now: datetime | None = None) -> Command:
    """POST the command to Amperio; unreachable leaves it undelivered for a later attempt."""
    now = now or timezone.now()
    if _expired(command, now):
        return _set(command, CommandStatus.EXPIRED, "Not delivered before valid_until.")
    token = settings.ENEXA_AMPERIO_TOKEN
    if not token:
        return _set(command, CommandStatus.UNDELIVERED, "ENEXA_AMPERIO_TOKEN is not set.")
    command.delivery_attempts += 1
    try:
        response = _session.post(
            f"{settings.ENEXA_AMPERIO_URL}/v1/dispatch",
            json=_payload(command),
            headers={"Authorization": f"Bearer {token}"},
            timeout=settings.ENEXA_AMPERIO_TIMEOUT_S,
        )
    except requests.RequestException as exc:
        logger.warning(
            "dispatch %s to %s: Amperio unreachable: %s",
            command.command_id,
            command.site.code,
            exc.__class__.__name__,
        )
        return _set(command, CommandStatus.UNDELIVERED, "Amperio unreachable; will retry.")
    if response.status_code in (200, 201, 202):
        command.delivered_at = now
        body = _json(response)
        return (
            _apply_remote(command, body)
            if body.get("status")
            else _set(command, CommandStatus.QUEUED, "")
        )
    if response.status_code >= 500 or response.status_code in (401, 429):
        logger.warning("dispatch %s: Amperio answered %s", command.command_id, response.status_code)
        return _set(
            command,
            CommandStatus.UNDELIVERED,
            f"Amperio answered {response.status_code}; will retry.",
        )
    body = _json(response)
    detail = body.get("detail") or body.get("title") or f"HTTP {response.status_code}"
    if body.get("errors"):
        detail = f"{detail} {body['errors']}"
    return _set(command, CommandStatus.REJECTED, str(detail))


def _get(path: str) -> requests.Response:
    """GET from Amperio's API; raises requests.RequestException when it does not answer."""
    return _session.get(
        f"{settings.ENEXA_AMPERIO_URL}{path}",
        headers={"Authorization": f"Bearer {settings.ENEXA_AMPERIO_TOKEN}"},
        timeout=settings.ENEXA_AMPERIO_TIMEOUT_S,
    )


def refresh_status(command: Command) -> Command:
    """Ask Amperio what became of a delivered command (no change when it is unreachable)."""
    try:
        return _refresh(command)
    except requests.RequestException:
        return command


def _refresh(command: Command) -> Command:
    """As `refresh_status`, raising requests.RequestException when Amperio does not answer."""
    if command.status in CommandStatus.final() or command.status == CommandStatus.UNDELIVERED:
        return command
    response = _get(f"/v1/dispatch/{command.command_id}")
    if response.status_code != 200:
        return command
    return _apply_remote(command, _json(response))


def sync_from_amperio(site: Site) -> dict:
    """After an outage, what Amperio says now: the site's part of `GET /v1/health` and the
    outcome of each of its commands still open at Amperio (`GET /v1/dispatch/{id}`, recorded
    on the command). Returns `{"health": <the site's health, or None>, "health_result",
    "commands": {"refreshed", "finished", "still_open"}}`; `health_result` is `synced`,
    `not_reported` (Amperio answered without this site), `unreachable` or `skipped` (no
    token). Once Amperio does not answer, nothing more is asked: `manage.py
    redeliver_commands` and a command's own page ask again later."""
    counts = {"refreshed": 0, "finished": 0, "still_open": 0}
    result: dict = {"health": None, "health_result": "skipped", "commands": counts}
    open_commands = list(
        Command.objects.filter(site=site, status=CommandStatus.QUEUED)
        .order_by("issued_at")
        .select_related("site")
    )
    counts["still_open"] = len(open_commands)
    if not settings.ENEXA_AMPERIO_TOKEN:
        return result
    try:
        response = _get("/v1/health")
    except requests.RequestException as exc:
        logger.warning("health of %s: Amperio unreachable: %s", site.code, type(exc).__name__)
        result["health_result"] = "unreachable"
        return result
    sites = _json(response).get("sites") if response.status_code == 200 else None
    health = sites.get(site.code) if isinstance(sites, dict) else None
    result["health"] = health if isinstance(health, dict) else None
    result["health_result"] = "synced" if result["health"] is not None else "not_reported"
    for command in open_commands:
        try:
            refreshed = _refresh(command)
        except requests.RequestException:
            break
        counts["refreshed"] += 1
        if refreshed.status != CommandStatus.QUEUED:
            counts["finished"] += 1
            counts["still_open"] -= 1
    return result


def redeliver_undelivered(
    site: Site | None = None, *, now: datetime | None = None
) -> dict[str, int]:
    """Deliver what is still valid of the site's undelivered commands (every site's when
    `site` is None), oldest first; expire what is not. Once Amperio does not take one, the
    rest wait for the next attempt rather than each waiting out its own timeout: this runs
    inline in the request that brings a site back, and from `manage.py redeliver_commands`."""
    now = now or timezone.now()
    counts = {"delivered": 0, "expired": 0, "still_undelivered": 0}
    pending = Command.objects.filter(status=CommandStatus.UNDELIVERED)
    if site is not None:
        pending = pending.filter(site=site)
    amperio_took_the_last = True
    for command in pending.order_by("issued_at").select_related("site"):
        if not amperio_took_the_last and not _expired(command, now):
            counts["still_undelivered"] += 1
            continue
        result = deliver(command, now=now)
        if result.status == CommandStatus.EXPIRED:
            counts["expired"] += 1
        elif result.status == CommandStatus.UNDELIVERED:
            counts["still_undelivered"] += 1
            amperio_took_the_last = False
        else:
            counts["delivered"] += 1
    return counts


def _apply_remote(command: Command, body: dict) -> Command:
    status = body.get("status")
    if status not in CommandStatus.values:
        return command
    command.registers = body.get("registers") or command.registers
    return _set(command, status, str(body.get("detail") or ""))


def _set(command: Command, status: str, detail: str) -> Command:
    command.status = status
    command.detail = detail
    command.save()
    return command


def _json(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}

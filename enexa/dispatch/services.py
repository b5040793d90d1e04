"""Issuing commands to Amperio, delivering them, and following their status."""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass
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
from shared.logs import REQUEST_ID_HEADER, current_request_id, request_context

from .choices import CommandStatus, DeliveryOutcome
from .models import Command, DeliveryAttempt
from .signals import command_status_changed

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
    """Store a command, undelivered: the caller enqueues its delivery (enexa.dispatch.tasks)
    once the transaction commits. Returns (command, created).

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
                request_id=current_request_id() or "",
            )
    except IntegrityError:  # the same id raced in from another request
        existing = Command.objects.select_related("site").get(command_id=command_id)
        return _replay(existing, site, parsed), False
    return stored, True


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


@dataclass(frozen=True)
class Delivery:
    """What came of one delivery: the command, and whether Amperio may take it soon."""

    command: Command
    transient: bool = False  # unreachable, 5xx or 429: worth another try with backoff
    retry_after_s: float | None = None  # Amperio's Retry-After, when it sent one
    unreachable: bool = False  # no answer at all: nothing else is deliverable right now


# Answers that say "not now" rather than "not this": the command may be taken later.
TRANSIENT_STATUSES = {429, 500, 502, 503, 504}


def deliver_by_id(command_id: str, *, now: datetime | None = None) -> Delivery | None:
    """Deliver the stored command `command_id` if it is still undelivered; None when there is
    no such command or it was delivered (or expired) meanwhile, so a repeated task is harmless."""
    command = (
        Command.objects.filter(command_id=command_id, status=CommandStatus.UNDELIVERED)
        .select_related("site")
        .first()
    )
    return deliver(command, now=now) if command is not None else None


def deliver(command: Command, *, now: datetime | None = None) -> Delivery:
    """POST the command to Amperio and record the attempt; a failure leaves it undelivered for
    a later attempt (the task's retry, else the periodic redelivery). The log lines and the
    call carry the request id of the request that issued it."""
    with request_context(command.request_id or current_request_id()):
        return _deliver(command, now or timezone.now())


def _amperio_headers() -> dict[str, str]:
    """The service token, and the request id this work is for, if any."""
    headers = {"Authorization": f"Bearer {settings.ENEXA_AMPERIO_TOKEN}"}
    request_id = current_request_id()
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return headers


def _deliver(command: Command, now: datetime) -> Delivery:
    if _expired(command, now):
        return Delivery(_set(command, CommandStatus.EXPIRED, "Not delivered before valid_until."))
    token = settings.ENEXA_AMPERIO_TOKEN
    if not token:
        return Delivery(_set(command, CommandStatus.UNDELIVERED, "ENEXA_AMPERIO_TOKEN is not set."))
    command.delivery_attempts += 1
    try:
        response = _session.post(
            f"{settings.ENEXA_AMPERIO_URL}/v1/dispatch",
            json=_payload(command),
            headers=_amperio_headers(),
            timeout=settings.ENEXA_AMPERIO_TIMEOUT_S,
        )
    except requests.RequestException as exc:
        logger.warning(
            "dispatch %s to %s: Amperio unreachable: %s",
            command.command_id,
            command.site.code,
            exc.__class__.__name__,
        )
        _attempt(command, now, DeliveryOutcome.UNREACHABLE, None, exc.__class__.__name__)
        return Delivery(
            _set(command, CommandStatus.UNDELIVERED, "Amperio unreachable; will retry."),
            transient=True,
            unreachable=True,
        )
    code = response.status_code
    if code in (200, 201, 202):
        logger.info(
            "dispatch %s to %s: accepted by Amperio (%s)",
            command.command_id,
            command.site.code,
            code,
        )
        _attempt(command, now, DeliveryOutcome.ACCEPTED, code, "")
        command.delivered_at = now
        body = _json(response)
        return Delivery(
            _apply_remote(command, body)
            if body.get("status")
            else _set(command, CommandStatus.QUEUED, "")
        )
    if code >= 500 or code in (401, 429):
        logger.warning(
            "dispatch %s to %s: Amperio answered %s", command.command_id, command.site.code, code
        )
        outcome = DeliveryOutcome.UNAUTHORIZED if code == 401 else DeliveryOutcome.UNAVAILABLE
        _attempt(command, now, outcome, code, _problem(response))
        return Delivery(
            _set(command, CommandStatus.UNDELIVERED, f"Amperio answered {code}; will retry."),
            transient=code in TRANSIENT_STATUSES,
            retry_after_s=_retry_after_s(response),
        )
    detail = _problem(response)
    _attempt(command, now, DeliveryOutcome.REJECTED, code, detail)
    return Delivery(_set(command, CommandStatus.REJECTED, detail))


def _attempt(command: Command, at: datetime, outcome: str, status: int | None, error: str) -> None:
    DeliveryAttempt.objects.create(
        command=command, attempted_at=at, outcome=outcome, http_status=status, error=error[:2000]
    )


def _problem(response: requests.Response) -> str:
    """What Amperio's problem details say went wrong."""
    body = _json(response)
    detail = body.get("detail") or body.get("title") or f"HTTP {response.status_code}"
    if body.get("errors"):
        detail = f"{detail} {body['errors']}"
    return str(detail)


def _retry_after_s(response: requests.Response) -> float | None:
    """Retry-After in seconds (the HTTP-date form is not used by Amperio: ignored)."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


def retry_countdown_s(delivery: Delivery | None, retries_done: int) -> float | None:
    """Seconds until the next try of a failed delivery, or None when there is none: it was no
    transient failure, or the retries are spent (the periodic redelivery takes over).
    Exponential backoff with jitter, so commands that failed together do not retry together;
    never sooner than Amperio's Retry-After."""
    if delivery is None or not delivery.transient:
        return None
    if retries_done >= settings.ENEXA_DELIVERY_MAX_RETRIES:
        return None
    backoff = min(
        settings.ENEXA_DELIVERY_BACKOFF_MAX_S, settings.ENEXA_DELIVERY_BACKOFF_S * 2**retries_done
    )
    countdown = backoff * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret
    return max(countdown, delivery.retry_after_s or 0.0)


def _get(path: str) -> requests.Response:
    """GET from Amperio's API; raises requests.RequestException when it does not answer."""
    return _session.get(
        f"{settings.ENEXA_AMPERIO_URL}{path}",
        headers=_amperio_headers(),
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
    with request_context(command.request_id or current_request_id()):
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
    token). Once Amperio does not answer, nothing more is asked: the worker's periodic status
    pull and a command's own page ask again later."""
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


def fetch_amperio_health() -> tuple[str, dict | None]:
    """Amperio's `GET /v1/health` (every site it serves): ("recorded", body), or
    ("unreachable" | "skipped", None) when it does not answer or no token is configured."""
    if not settings.ENEXA_AMPERIO_TOKEN:
        return "skipped", None
    try:
        response = _get("/v1/health")
    except requests.RequestException as exc:
        logger.warning("gateway health: Amperio unreachable: %s", type(exc).__name__)
        return "unreachable", None
    if response.status_code not in (200, 503):
        logger.warning("gateway health: Amperio answered %s", response.status_code)
        return "unreachable", None
    return "recorded", _json(response)


def redeliver_undelivered(
    site: Site | None = None, *, now: datetime | None = None
) -> dict[str, int]:
    """Deliver what is still valid of the site's undelivered commands (every site's when
    `site` is None), oldest first; expire what is not. Runs on the worker: periodically
    (enexa.dispatch.tasks.redeliver_commands) and when a site comes back after an outage.
    A site whose command Amperio answered with a failure waits for the next run, without
    holding up other sites; once Amperio does not answer at all, every remaining command
    waits, rather than each waiting out its own timeout."""
    now = now or timezone.now()
    counts = {"delivered": 0, "expired": 0, "still_undelivered": 0}
    pending = Command.objects.filter(status=CommandStatus.UNDELIVERED)
    if site is not None:
        pending = pending.filter(site=site)
    waiting_sites: set[int] = set()
    amperio_down = False
    for command in pending.order_by("issued_at").select_related("site"):
        if (amperio_down or command.site_id in waiting_sites) and not _expired(command, now):
            counts["still_undelivered"] += 1
            continue
        delivery = deliver(command, now=now)
        result = delivery.command
        if result.status == CommandStatus.EXPIRED:
            counts["expired"] += 1
        elif result.status == CommandStatus.UNDELIVERED:
            counts["still_undelivered"] += 1
            waiting_sites.add(command.site_id)
            amperio_down = amperio_down or delivery.unreachable
        else:
            counts["delivered"] += 1
    return counts


def supersede_undelivered(site: Site, command: str, detail: str) -> int:
    """Expire the site's undelivered `command`s: a newer one replaces them (a new plan's
    schedule), so none may reach the site after it. Returns how many."""
    return Command.objects.filter(
        site=site, command=command, status=CommandStatus.UNDELIVERED
    ).update(status=CommandStatus.EXPIRED, detail=detail, updated_at=timezone.now())


# At most this many open commands are asked after per status pull, oldest first.
PULL_BATCH = 500


def pull_open_statuses() -> dict[str, int]:
    """Ask Amperio what became of each command it holds open (queued), oldest first, and
    record the answers; stops at the first it does not answer (the next pull asks again)."""
    counts = {"refreshed": 0, "finished": 0}
    if not settings.ENEXA_AMPERIO_TOKEN:
        return counts
    open_commands = Command.objects.filter(status=CommandStatus.QUEUED).order_by("issued_at")
    for command in open_commands.select_related("site")[:PULL_BATCH]:
        try:
            refreshed = _refresh(command)
        except requests.RequestException:
            break
        counts["refreshed"] += 1
        counts["finished"] += refreshed.status in CommandStatus.final()
    return counts


def _apply_remote(command: Command, body: dict) -> Command:
    status = body.get("status")
    if status not in CommandStatus.values:
        return command
    command.registers = body.get("registers") or command.registers
    return _set(command, status, str(body.get("detail") or ""))


def _set(command: Command, status: str, detail: str) -> Command:
    previous = command.status
    command.status = status
    command.detail = detail
    command.save()
    if previous != status:
        # Alerts and webhooks follow status changes; after the commit, so never a rolled-back one.
        transaction.on_commit(
            lambda: command_status_changed.send(Command, command=command, previous=previous)
        )
    return command


def _json(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}

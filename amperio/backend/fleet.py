"""The backend's answers for many sites: accept a command for a site it serves and publish it
on that site's queue, answer its status from the shared store, list every site's health."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from amperio.backend.store import BackendStore
from amperio.dispatch.errors import CommandConflict, CommandError, LimitsUnknown, UnknownCommand
from amperio.dispatch.limits import check_limits
from amperio.dispatch.records import EXPIRED, FAILED, QUEUED, REJECTED, fingerprint
from amperio.dispatch.table import STUCK_AFTER_S
from shared.dispatch import DispatchCommand
from shared.fields import format_timestamp, parse_timestamp

logger = logging.getLogger(__name__)

RECEIVE_COMMAND_TASK = "amperio.tasks.receive_command"
# publish(task name, args, queue): the Celery app's send_task in production.
Publish = Callable[[str, list[Any], str], None]


class UnknownSite(CommandError):
    """A command for a site this backend does not serve (404)."""


def site_queue(site_id: str) -> str:
    return f"amperio.site.{site_id}"


def served_sites(store: BackendStore, configured: tuple[str, ...]) -> list[str]:
    """Sites configured (`AMPERIO_SITES`) and sites whose gateway has reported."""
    return sorted(set(configured) | {row.site_id for row in store.sites()})


def accept(
    store: BackendStore,
    configured: tuple[str, ...],
    cmd: DispatchCommand,
    publish: Publish,
    now: datetime | None = None,
) -> tuple[dict[str, Any], bool]:
    """Check a command against its site's limits, store it and publish it on the site's
    queue. Returns (status record, created). Raises UnknownSite, CommandConflict, CommandError
    (stored as rejected), LimitsUnknown (nothing stored)."""
    now = now or datetime.now(UTC)
    assert cmd.command_id  # the API gives one to a command without
    site = store.site(cmd.site_id)
    if site is None and cmd.site_id not in configured:
        raise UnknownSite(f"This backend serves no site {cmd.site_id}.")
    mark = fingerprint(cmd)
    existing = store.command(cmd.command_id)
    if existing is not None:
        return _replay(existing, mark), False
    if site is None or not site.limits:
        raise LimitsUnknown(
            f"Site {cmd.site_id}'s gateway has not reported its equipment limits yet; "
            "try again shortly."
        )
    status, detail, error = QUEUED, "", None
    try:
        check_limits(cmd, site.limits)
    except CommandError as exc:
        status, detail, error = REJECTED, exc.detail, exc
    if error is None and cmd.valid_until and now >= cmd.valid_until:
        status = EXPIRED
        detail = f"Arrived after its validity ended at {format_timestamp(cmd.valid_until)}."
    payload = cmd.to_dict()
    if not store.add_command(cmd.command_id, cmd.site_id, payload, mark, status, detail, now):
        found = store.command(cmd.command_id)  # the same id raced in from another replica
        assert found is not None
        return _replay(found, mark), False
    if error is not None:
        raise error
    if status == QUEUED:
        try:
            publish(RECEIVE_COMMAND_TASK, [payload], site_queue(cmd.site_id))
        except Exception:  # noqa: BLE001 - said in the record, not hidden as queued forever
            logger.exception("command %s stored but not published", cmd.command_id)
            failed = {
                "command_id": cmd.command_id,
                "status": FAILED,
                "detail": "The site's queue could not be reached; nothing was sent.",
                "finished_at": format_timestamp(now),
            }
            store.record_outcome(cmd.site_id, failed, now)
    logger.info("command %s (%s) for %s %s", cmd.command_id, cmd.command, cmd.site_id, status)
    return status_of(store, cmd.command_id), True


def _replay(row: dict[str, Any], mark: str) -> dict[str, Any]:
    if row["fingerprint"] != mark:
        raise CommandConflict(
            f"command_id {row['command_id']} was already used for a different command.",
            {"command_id": ["Already used for a different command."]},
        )
    if (
        row["status"] == REJECTED
        and not row["registers"]
        and row["finished_at"] == row["received_at"]
    ):
        raise CommandError(row["detail"], {})  # refused on arrival: a replay is refused too
    return _wire(row)


def status_of(store: BackendStore, command_id: str) -> dict[str, Any]:
    """The wire shape of `GET /v1/dispatch/{command_id}` from the shared store."""
    row = store.command(command_id)
    if row is None:
        raise UnknownCommand(f"No command {command_id}.")
    return _wire(row)


def _ts(value: str | None) -> str | None:
    """A stored time (the store's fixed width, or as a gateway sent it) in the wire's format."""
    moment = parse_timestamp(value)
    return format_timestamp(moment) if moment else None


def _wire(row: dict[str, Any]) -> dict[str, Any]:
    payload = row["payload"]
    return {
        "command_id": row["command_id"],
        "site_id": row["site_id"],
        "command": payload["command"],
        "params": payload["params"],
        "timestamp": payload["timestamp"],
        "valid_until": payload.get("valid_until"),
        "status": row["status"],
        "detail": row["detail"],
        "registers": row["registers"],
        "received_at": _ts(row["received_at"]),
        "finished_at": _ts(row["finished_at"]),
        "lease_until": _ts(row["lease_until"]),
    }


def _sort_key(value: str) -> datetime:
    return parse_timestamp(value) or datetime.min.replace(tzinfo=UTC)


def fleet_health(
    store: BackendStore, configured: tuple[str, ...], silent_after_s: float, now: datetime
) -> dict[str, Any]:
    """Every site as its gateway last reported it, with how long ago; a gateway silent for
    longer than `silent_after_s` (or never heard from) makes its site degraded."""
    rows = {row.site_id: row for row in store.sites()}
    unconfirmed = store.unconfirmed(now - timedelta(seconds=STUCK_AFTER_S))
    sites: dict[str, Any] = {}
    reachable: list[bool] = []
    last_ok: list[str] = []
    for site_id in served_sites(store, configured):
        row = rows.get(site_id)
        report = (row.health if row else None) or {}
        site = dict(report.get("site") or {})
        last = parse_timestamp(row.last_report_at) if row else None
        age = (now - last).total_seconds() if last else None
        silent = age is None or age > silent_after_s
        site["last_report_at"] = format_timestamp(last) if last else None
        site["last_report_age_s"] = round(age, 1) if age is not None else None
        # Queued here with no outcome after STUCK_AFTER_S: the gateway never answered for it.
        site["unconfirmed_commands"] = unconfirmed.get(site_id, 0)
        ok = not silent and report.get("status") == "ok" and not site["unconfirmed_commands"]
        site["status"] = "ok" if ok else "degraded"
        sites[site_id] = site
        enexa = report.get("enexa") or {}
        if not silent:
            reachable.append(bool(enexa.get("reachable")))
        if enexa.get("last_ok_at"):
            last_ok.append(str(enexa["last_ok_at"]))
    ok = bool(sites) and all(site["status"] == "ok" for site in sites.values())
    return {
        "status": "ok" if ok else "degraded",
        "sites": sites,
        # Enexa as the gateways heard from lately see it.
        "enexa": {
            "reachable": bool(reachable) and all(reachable),
            "last_ok_at": max(last_ok, key=_sort_key) if last_ok else None,
        },
    }

"""The alert signals (an alert opened or resolved: webhooks tell subscribers), and the
receivers that re-check the rules an event (or a gateway health poll) bears on right after
it, on the worker."""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal, receiver

from enexa.dispatch.signals import command_status_changed
from enexa.telemetry.signals import (
    events_stored,
    gateway_health_recorded,
    site_came_online,
    site_went_offline,
)

from .rules import FAILED_COMMANDS, HEALTH_RULES

# alert (the Alert), sent once committed.
alert_opened = Signal()
alert_resolved = Signal()

# The rules worth re-checking at once after each kind of gateway event.
RULES_BY_EVENT_KIND = {
    "modbus_link": ["modbus_link_down"],
    "alarm": ["chargepost_alarm", "watchdog_fallback"],
    "watchdog": ["watchdog_fallback"],
    "mode_change": ["gateway_degraded"],
    "firmware": ["firmware_update_failed"],
    # No `command`: `command_failed` reads Enexa's own commands, which a gateway's `command`
    # event does not change; their status changes queue it (command_changed below). It queued
    # a task per dispatched command on the worker that delivers the next ones.
}
PRESENCE_RULES = ["site_offline", "telemetry_gap", "gateway_degraded"]


def _evaluate_soon(site_pks: set[int], rules: list[str]) -> None:
    # Imported here: the tasks call the services, which send the signals above.
    from . import tasks

    for site_pk in sorted(site_pks):
        tasks.evaluate_site.delay(site_pk, rules)


@receiver(site_went_offline, dispatch_uid="alerts_site_went_offline")
@receiver(site_came_online, dispatch_uid="alerts_site_came_online")
def presence_changed(sender: Any, site_pk: int, **kwargs: Any) -> None:
    _evaluate_soon({site_pk}, PRESENCE_RULES)


@receiver(events_stored, dispatch_uid="alerts_events_stored")
def events_arrived(sender: Any, site_pks: set[int], kinds: set[str], **kwargs: Any) -> None:
    rules = sorted({name for kind in kinds for name in RULES_BY_EVENT_KIND.get(kind, [])})
    if rules:
        _evaluate_soon(site_pks, rules)


@receiver(gateway_health_recorded, dispatch_uid="alerts_gateway_health_recorded")
def gateway_health_arrived(sender: Any, site_pks: set[int], **kwargs: Any) -> None:
    # Every site at once (one query per rule), not a task per site: a poll covers the fleet.
    from . import tasks

    if site_pks:
        tasks.evaluate_alerts.delay(HEALTH_RULES)


@receiver(command_status_changed, dispatch_uid="alerts_command_status_changed")
def command_changed(sender: Any, command: Any, previous: str | None = None, **kwargs: Any) -> None:
    # Only a change into or out of a failed status can open or resolve `command_failed` (its
    # window passing is the periodic evaluation's): a delivery (undelivered -> queued) or an
    # outcome `applied` queued a task per command for nothing, on the worker that delivers.
    if command.status in FAILED_COMMANDS or previous in FAILED_COMMANDS:
        _evaluate_soon({command.site_id}, ["command_failed"])

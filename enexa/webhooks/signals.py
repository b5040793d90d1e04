"""The events webhooks send, from the signals of the apps where they happen: alerts opened and
resolved, command status changes, sites going offline and coming back online, plans created,
sites released from the optimizer.
Each body's `data` has the shape the API gives the same thing (its serializer)."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from enexa.alerts.serializers import AlertSerializer
from enexa.alerts.signals import alert_opened, alert_resolved
from enexa.dispatch.serializers import CommandSerializer
from enexa.dispatch.signals import command_status_changed
from enexa.optimizer.services import plan_created, plan_released, plan_view, release_view
from enexa.registry.models import Site
from enexa.telemetry.signals import site_came_online, site_went_offline
from shared.fields import format_timestamp

from . import services


@receiver(alert_opened, dispatch_uid="webhooks_alert_opened")
def alert_was_opened(sender: Any, alert: Any, **kwargs: Any) -> None:
    services.publish("alert.opened", alert.site, dict(AlertSerializer(alert).data))


@receiver(alert_resolved, dispatch_uid="webhooks_alert_resolved")
def alert_was_resolved(sender: Any, alert: Any, **kwargs: Any) -> None:
    services.publish("alert.resolved", alert.site, dict(AlertSerializer(alert).data))


@receiver(command_status_changed, dispatch_uid="webhooks_command_status_changed")
def command_was_updated(sender: Any, command: Any, previous: str | None, **kwargs: Any) -> None:
    # Serialised only for a subscribed endpoint: this runs on every delivery to Amperio.
    services.publish(
        "command.updated",
        command.site,
        lambda: dict(CommandSerializer(command).data) | {"previous_status": previous},
    )


def _presence(event_type: str, site_pk: int, at: Any, reason: str) -> None:
    site = Site.objects.filter(pk=site_pk).first()
    if site is not None:
        data = {"site_id": site.code, "at": format_timestamp(at), "reason": reason}
        services.publish(event_type, site, data)


@receiver(site_went_offline, dispatch_uid="webhooks_site_went_offline")
def site_is_offline(sender: Any, site_pk: int, at: Any, reason: str, **kwargs: Any) -> None:
    _presence("site.offline", site_pk, at, reason)


@receiver(site_came_online, dispatch_uid="webhooks_site_came_online")
def site_is_online(sender: Any, site_pk: int, at: Any, reason: str, **kwargs: Any) -> None:
    _presence("site.online", site_pk, at, reason)


@receiver(plan_created, dispatch_uid="webhooks_plan_created")
def plan_was_created(sender: Any, plan: Any, **kwargs: Any) -> None:
    # The plan as the API shows it, without its slots (up to 672 of them: GET the plan).
    data = {k: v for k, v in plan_view(plan).items() if k != "slots"}
    data |= {"start": format_timestamp(plan.start_at), "end": format_timestamp(plan.end_at)}
    services.publish("plan.created", plan.site, data)


@receiver(plan_released, dispatch_uid="webhooks_plan_released")
def plan_was_released(sender: Any, release: Any, **kwargs: Any) -> None:
    services.publish("plan.released", release.site, release_view(release))

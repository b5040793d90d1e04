"""Evaluating the rules into alerts (opened once, updated, resolved when the condition clears),
acknowledging them, and alerts about other subjects than a site (a failing webhook)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from enexa.core.errors import ConflictError, InvalidInput

from . import signals
from .choices import AlertState
from .models import Alert
from .rules import RULES, Rule

logger = logging.getLogger(__name__)


def new_code() -> str:
    """A public alert id: never the integer key."""
    return f"alr_{secrets.token_hex(8)}"


def evaluate(
    *,
    rules: Iterable[str] | None = None,
    site_pks: set[int] | None = None,
    now: datetime | None = None,
) -> dict[str, int]:
    """Run the rules (all, or those named) over every site (or those given) and bring the
    alerts in line: an alert opens where a condition newly holds, its detail follows the
    condition while it holds, and it resolves once the condition clears. Idempotent, so the
    beat's run and those after events may overlap."""
    now = now or timezone.now()
    counts = {"opened": 0, "updated": 0, "resolved": 0}
    for name in rules if rules is not None else list(RULES):
        one = _evaluate_rule(RULES[name], site_pks, now)
        for key in counts:
            counts[key] += one[key]
    return counts


def _evaluate_rule(rule: Rule, site_pks: set[int] | None, now: datetime) -> dict[str, int]:
    counts = {"opened": 0, "updated": 0, "resolved": 0}
    try:
        holds = rule.check(now, site_pks)
    except Exception:  # one broken rule must not stop the others
        logger.exception("alert rule %s failed", rule.name)
        return counts
    current = Alert.objects.filter(rule=rule.name, site__isnull=False, subject="").filter(
        state__in=AlertState.unresolved()
    )
    if site_pks is not None:
        current = current.filter(site_id__in=site_pks)
    unresolved = {alert.site_id: alert for alert in current}
    for site_pk, detail in holds.items():
        alert = unresolved.pop(site_pk, None)
        if alert is None:
            try:
                _, created = open_alert(rule.name, rule.severity, detail, site_pk=site_pk, now=now)
            except ConflictError:  # raced with another evaluation: the next run settles it
                continue
            counts["opened" if created else "updated"] += 1
        elif alert.detail != detail:
            alert.detail = detail
            alert.save(update_fields=["detail", "updated_at"])
            counts["updated"] += 1
    for alert in unresolved.values():
        counts["resolved"] += resolve(alert, now=now)
    return counts


def open_alert(
    rule: str,
    severity: str,
    detail: dict[str, Any],
    *,
    site_pk: int | None = None,
    subject: str = "",
    now: datetime | None = None,
) -> tuple[Alert, bool]:
    """The unresolved alert of (rule, site, subject), its detail updated, or a new one;
    returns (alert, opened). The unique constraint settles a race between evaluations."""
    now = now or timezone.now()
    found = _unresolved(rule, site_pk, subject).first()
    if found is None:
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    code=new_code(),
                    site_id=site_pk,
                    rule=rule,
                    subject=subject,
                    severity=severity,
                    detail=detail,
                    opened_at=now,
                )
        except IntegrityError:  # another evaluation opened it first
            found = _unresolved(rule, site_pk, subject).first()
        else:
            logger.info("alert %s opened: %s at site %s %s", alert.code, rule, site_pk, subject)
            transaction.on_commit(lambda: signals.alert_opened.send(Alert, alert=alert))
            return alert, True
    if found is None:  # opened and resolved meanwhile: the next evaluation decides
        raise ConflictError(f"Alert {rule} changed while it was being opened.")
    if found.detail != detail:
        found.detail = detail
        found.save(update_fields=["detail", "updated_at"])
    return found, False


def _unresolved(rule: str, site_pk: int | None, subject: str) -> QuerySet[Alert]:
    return Alert.objects.filter(
        rule=rule, site_id=site_pk, subject=subject, state__in=AlertState.unresolved()
    )


def resolve(alert: Alert, *, now: datetime | None = None) -> bool:
    """Resolve the alert (once, however many evaluations race); False when it already was."""
    now = now or timezone.now()
    if not Alert.objects.filter(pk=alert.pk, state__in=AlertState.unresolved()).update(
        state=AlertState.RESOLVED, resolved_at=now, updated_at=now
    ):
        return False
    alert.refresh_from_db()
    logger.info("alert %s resolved: %s at site %s", alert.code, alert.rule, alert.site_id)
    transaction.on_commit(lambda: signals.alert_resolved.send(Alert, alert=alert))
    return True


def resolve_subject(rule: str, subject: str, *, now: datetime | None = None) -> bool:
    """Resolve the site-less alert of (rule, subject), if one is open."""
    alert = _unresolved(rule, None, subject).first()
    return resolve(alert, now=now) if alert is not None else False


def acknowledge(alert: Alert, *, by: str, now: datetime | None = None) -> Alert:
    """Mark the alert seen; it stays (and is not reopened) until its condition clears.
    Acknowledging twice keeps the first; a resolved alert cannot be acknowledged."""
    now = now or timezone.now()
    if alert.state == AlertState.RESOLVED:
        raise ConflictError(f"Alert {alert.code} is already resolved.")
    Alert.objects.filter(pk=alert.pk, state=AlertState.OPEN).update(
        state=AlertState.ACKNOWLEDGED, acknowledged_at=now, acknowledged_by=by, updated_at=now
    )
    alert.refresh_from_db()
    return alert


def filter_alerts(
    alerts: QuerySet[Alert], *, site: str | None, state: str | None
) -> QuerySet[Alert]:
    """`GET /v1/alerts?site=&state=`: narrowed to a site's code and a state; an unknown state
    is a field error."""
    if state:
        if state not in AlertState.values:
            raise InvalidInput(
                "Unknown alert state.",
                {"state": [f"Must be one of {', '.join(AlertState.values)}."]},
            )
        alerts = alerts.filter(state=state)
    if site:
        alerts = alerts.filter(site__code=site)
    return alerts

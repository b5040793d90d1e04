"""Recording API calls: which objects a request changed, masking, and writing the entry."""

import contextvars
import functools
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode

from django.conf import settings
from django.db import connection
from django.utils import timezone

from enexa.core.sql import run_prepared

from .models import AuditEntry

logger = logging.getLogger(__name__)

MAX_CHANGES = 50
REDACTED = "[redacted]"
# Names of fields that hold secrets (API keys, enrollment secrets, passwords, tokens).
SECRET_NAME = re.compile(r"key|secret|password|passwd|token|authorization|signature", re.I)
# Changes to these models are bookkeeping, not what the caller changed: a site's presence and
# outage records follow from any contact (a reading, an event, a status report) and from silence.
IGNORED_MODELS = {
    "audit.auditentry",
    "sessions.session",
    "telemetry.sitestatus",
    "telemetry.sitestatustransition",
    "telemetry.outagereport",
}

# URL parameters naming the object a write acts on, for writes that change it without a model
# signal (queryset updates such as a key revocation).
URL_TARGETS = {
    "controller_id": "registry.controller",
    "site_id": "registry.site",
    "asset_id": "registry.equipment",
    "command_id": "dispatch.command",
    "alert_id": "alerts.alert",
    "webhook_id": "webhooks.webhook",
}

_changes: contextvars.ContextVar[list[dict] | None] = contextvars.ContextVar(
    "audit_changes", default=None
)


def start_collecting() -> contextvars.Token:
    return _changes.set([])


def collected() -> list[dict]:
    """The changes collected so far in this context (the list keeps growing)."""
    changes = _changes.get()
    return [] if changes is None else changes


def stop_collecting(token: contextvars.Token) -> list[dict]:
    changes = _changes.get() or []
    _changes.reset(token)
    return changes


def object_id(instance) -> str:
    """The public name of a changed object: its code where it has one, never a field value
    that could be secret."""
    for attr in ("code", "command_id"):
        value = getattr(instance, attr, None)
        if value:
            return str(value)
    return str(instance.pk)


def note_change(instance, action: str) -> None:
    """Called from model signals: remember `instance` if a request is being audited."""
    changes = _changes.get()
    if changes is None:
        return
    label = instance._meta.label_lower
    if label in IGNORED_MODELS:
        return
    if len(changes) >= MAX_CHANGES:
        if changes[-1].get("model") != "...":
            changes.append({"model": "...", "id": "more", "action": "truncated"})
        return
    entry = {"model": label, "id": object_id(instance), "action": action}
    if entry not in changes:
        changes.append(entry)


def url_targets(kwargs: dict) -> list[dict]:
    """The objects a write's URL names (`/v1/controllers/CTRL001/api-keys/revoke`)."""
    return [
        {"model": model, "id": str(kwargs[name]), "action": "target"}
        for name, model in URL_TARGETS.items()
        if name in kwargs
    ]


def redact_query(query_string: str) -> str:
    pairs = parse_qsl(query_string, keep_blank_values=True)
    return urlencode(
        [(name, REDACTED if SECRET_NAME.search(name) else value) for name, value in pairs]
    )[:1000]


# One row per API call: a hand-written INSERT, since building it through the ORM cost more than
# the write itself on the hot ingest path.
# Only the table and these column names are interpolated into it; values are parameters.
_COLUMNS = (
    "created_at, principal, source_ip, method, path, query, changes, duration_ms, status_code"
)


@functools.cache
def _insert_sql(vendor: str) -> str:
    changes = "%s::jsonb" if vendor == "postgresql" else "%s"
    return (
        f"INSERT INTO {AuditEntry._meta.db_table} ({_COLUMNS}) "  # noqa: S608
        f"VALUES (%s, %s, %s, %s, %s, %s, {changes}, %s, %s)"
    )


def insert_select_sql(status_sql: str) -> str:
    """PostgreSQL: `INSERT ... SELECT` of one entry (parameters: Call.params()) whose status
    code is the SQL expression `status_sql`, for a statement that writes a call's work and its
    entry together (enexa.telemetry.storage)."""
    return (
        f"INSERT INTO {AuditEntry._meta.db_table} ({_COLUMNS}) "  # noqa: S608
        f"SELECT %s, %s, %s, %s, %s, %s, %s::jsonb, %s, {status_sql}"
    )


@dataclass(frozen=True)
class Call:
    """An API call as its entry records it, but its status code."""

    principal: str
    source_ip: str | None
    method: str
    path: str
    query_string: str
    changes: list[dict]
    started: float  # time.monotonic() when the call began

    def params(self) -> list:
        """The entry's values in _COLUMNS order, without the status code; the duration is
        the time until now."""
        return [
            connection.ops.adapt_datetimefield_value(timezone.now()),
            self.principal[:200],
            self.source_ip,
            self.method[:10],
            self.path[:500],
            redact_query(self.query_string),
            json.dumps(self.changes, default=str),
            int((time.monotonic() - self.started) * 1000),
        ]

    def record(self, status_code: int) -> None:
        """Write the entry on its own; a failure (database down) is logged, never raised into
        the response."""
        try:
            run_prepared(_insert_sql(connection.vendor), [*self.params(), status_code])
        except Exception as exc:  # noqa: BLE001 - the response matters more than its audit row
            logger.warning(
                "audit entry for %s %s not written: %s", self.method, self.path, type(exc).__name__
            )


def prune_audit_entries(older_than_days: int | None = None) -> int:
    """Delete entries older than `older_than_days` (default ENEXA_AUDIT_RETENTION_DAYS)."""
    days = settings.ENEXA_AUDIT_RETENTION_DAYS if older_than_days is None else older_than_days
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = AuditEntry.objects.filter(created_at__lt=cutoff).delete()
    logger.info("pruned %s audit entries older than %s days", deleted, days)
    return deleted

"""Recording API calls: which objects a request changed, masking, and writing the entry."""

import contextvars
import functools
import json
import logging
import re
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
# Changes to these models are bookkeeping, not what the caller changed.
IGNORED_MODELS = {"audit.auditentry", "sessions.session"}

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
_INSERT_SQL = (
    "INSERT INTO {table} (created_at, principal, source_ip, method, path, query, status_code, "
    "changes, duration_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, {json}, %s)"
)


@functools.cache
def _insert_sql(vendor: str) -> str:
    return _INSERT_SQL.format(
        table=AuditEntry._meta.db_table, json="%s::jsonb" if vendor == "postgresql" else "%s"
    )


def record_call(
    *,
    principal: str,
    source_ip: str | None,
    method: str,
    path: str,
    query_string: str,
    status_code: int,
    changes: list[dict],
    duration_ms: int,
) -> None:
    """Write one entry; a failure (database down) is logged, never raised into the response."""
    statement = _insert_sql(connection.vendor)
    params = [
        connection.ops.adapt_datetimefield_value(timezone.now()),
        principal[:200],
        source_ip,
        method[:10],
        path[:500],
        redact_query(query_string),
        status_code,
        json.dumps(changes, default=str),
        duration_ms,
    ]
    try:
        run_prepared(statement, params)
    except Exception as exc:  # noqa: BLE001 - the response matters more than its audit row
        logger.warning("audit entry for %s %s not written: %s", method, path, type(exc).__name__)


def prune_audit_entries(older_than_days: int | None = None) -> int:
    """Delete entries older than `older_than_days` (default ENEXA_AUDIT_RETENTION_DAYS)."""
    days = settings.ENEXA_AUDIT_RETENTION_DAYS if older_than_days is None else older_than_days
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = AuditEntry.objects.filter(created_at__lt=cutoff).delete()
    logger.info("pruned %s audit entries older than %s days", deleted, days)
    return deleted

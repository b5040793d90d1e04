"""A per-process cache of the API-key lookup, invalidated through a generation kept in Redis.

Every controller call authenticates; reading the key, its controller, site and allowlist from
PostgreSQL was about a quarter of PostgreSQL's CPU per single-reading post. With REDIS_URL set,
each process keeps what it read, tagged with the generation (a random token in Redis) it saw
before reading. Each call asks Redis for the generation (one round trip) and uses an entry only
if it carries that generation, so a change is seen by every process on its next call.

What bumps the generation: any write statement through Django's database connections that
touches the tables the lookup reads (keys, controllers, sites, allowlists), whatever made it:
services, the admin, queryset `.update()`, bulk operations, deletes and cascades, raw SQL
through Django's cursor. It is bumped at once and again after the commit, so a process that
read the old row between the two cannot keep it. Writes made outside Django (psql) are seen
when an entry reaches MAX_AGE_S. Without REDIS_URL (the demo), or with Redis unreachable, there
is no cache: every call reads the database."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.backends.signals import connection_created
from django.utils.dateparse import parse_datetime

logger = logging.getLogger(__name__)

# The Redis key of the token, by database: installations (or test runs) on other databases
# sharing one Redis never invalidate each other's caches.
GENERATION_KEY = "enexa:api-key-lookup:generation"


def generation_key() -> str:
    return f"{GENERATION_KEY}:{connection.settings_dict['NAME']}"


# Bounds how long a change made outside Django (psql), or a bump lost with Redis, goes unseen.
MAX_AGE_S = 60.0
# Entries kept per process at most (one per key in use); past it the cache starts over.
MAX_ENTRIES = 10_000
# The tables whose rows the lookup returns or decides by.
WATCHED_TABLES = re.compile(
    r"\b(registry_site|registry_controller|provisioning_apikey|provisioning_controlleraccess)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class KeyRow:
    """What the lookup read about one key, as stored: decisions that depend on the time
    (expiry, rotation grace, last use) are made at each call, not when it was read."""

    key_pk: int
    secret_hash: str
    revoked: bool
    expires_at: datetime | None
    last_used_at: datetime | None
    controller_pk: int
    controller_code: str
    state: str
    site_pk: int
    site_code: str
    allowlist: Any


@dataclass
class _Entry:
    generation: bytes
    loaded_at: float
    row: KeyRow


_entries: dict[str, _Entry] = {}
# Writes that do not change what the lookup decides (a key's last use) set this.
_unchanged: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "keycache_unchanged", default=False
)


@lru_cache(maxsize=4)
def _redis(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)


def enabled() -> bool:
    return bool(settings.REDIS_URL)


def as_datetime(value: Any) -> datetime | None:
    """SQLite hands raw-SQL timestamps back as text."""
    if value is not None and not isinstance(value, datetime):
        value = parse_datetime(str(value))
    if value is not None and value.tzinfo is None:  # stored in UTC
        value = value.replace(tzinfo=UTC)
    return value


def current_generation() -> bytes | None:
    """The generation in Redis (creating one when there is none); None without Redis."""
    if not enabled():
        return None
    try:
        client = _redis(settings.REDIS_URL)
        generation = client.get(generation_key())
        if generation is None:
            client.set(generation_key(), uuid.uuid4().hex, nx=True)
            generation = client.get(generation_key())
        return generation
    except Exception as exc:  # noqa: BLE001 - no Redis, no cache: read the database
        logger.warning(
            "API key cache off for this call: Redis unavailable (%s)", type(exc).__name__
        )
        return None


def cached(lookup: str, generation: bytes | None) -> KeyRow | None:
    """The row read for `lookup` under `generation`, if still valid."""
    held = latest(lookup) if generation is not None else None
    return held[1] if held is not None and held[0] == generation else None


def latest(lookup: str) -> tuple[bytes, KeyRow] | None:
    """The generation and row this process last read for `lookup` (within MAX_AGE_S), whatever
    Redis's generation is now: only for a caller that confirms the generation is still current
    before acting on the row (throttling.count_call_if_current)."""
    entry = _entries.get(lookup)
    if entry is None or time.monotonic() - entry.loaded_at > MAX_AGE_S:
        return None
    return entry.generation, entry.row


def remember(lookup: str, generation: bytes | None, row: KeyRow) -> None:
    """Keep `row`, read after `generation` was seen (never later, or a change could be lost)."""
    if generation is None:
        return
    if len(_entries) >= MAX_ENTRIES:
        _entries.clear()
    _entries[lookup] = _Entry(generation, time.monotonic(), row)


def note_used(lookup: str, at: datetime) -> None:
    """This process wrote the key's last use: its entry need not write it again."""
    entry = _entries.get(lookup)
    if entry is not None:
        row = entry.row
        entry.row = KeyRow(**{**row.__dict__, "last_used_at": at})


def clear() -> None:
    """Forget every entry of this process (tests)."""
    _entries.clear()


def bump() -> None:
    """A new generation: every process's entries are stale from its next call on."""
    _entries.clear()
    if not enabled():
        return
    try:
        _redis(settings.REDIS_URL).set(generation_key(), uuid.uuid4().hex)
    except Exception as exc:  # noqa: BLE001 - the write stands; entries expire in MAX_AGE_S
        logger.error(
            "API key cache generation not bumped (%s): other processes may use what they "
            "cached for up to %s s",
            type(exc).__name__,
            MAX_AGE_S,
        )


@contextlib.contextmanager
def unchanged() -> Iterator[None]:
    """Writes inside do not change what the lookup decides (a key's last use)."""
    token = _unchanged.set(True)
    try:
        yield
    finally:
        _unchanged.reset(token)


def changes_lookup(sql: str) -> bool:
    """Whether a statement may change what the lookup returns: any write naming its tables."""
    head = sql.lstrip()[:6].upper()
    return head != "SELECT" and bool(WATCHED_TABLES.search(sql))


def _changed_nothing(sql: str, cursor) -> bool:
    plain_update = sql.lstrip()[:6].upper() == "UPDATE" and "RETURNING" not in sql.upper()
    return plain_update and getattr(cursor, "rowcount", -1) == 0


def _watch_writes(execute, sql, params, many, context):
    result = execute(sql, params, many, context)
    # psycopg's composed statements are judged by their text too (it names the tables).
    sql = sql if isinstance(sql, str) else str(sql)
    if not _unchanged.get() and changes_lookup(sql):
        # An UPDATE that matched no row changed nothing: status reports run one per call (a
        # controller's firmware version, unchanged) and must not empty every cache each time.
        # Only a plain UPDATE: with RETURNING, SQLite counts rows only as they are fetched.
        if _changed_nothing(sql, context["cursor"]):
            return result
        bump()
        # Again once committed: a process that read the old row before the commit, after the
        # first bump, tagged it with the new generation.
        transaction.on_commit(bump, using=context["connection"].alias)
    return result


def _install(sender, connection, **kwargs) -> None:
    if _watch_writes not in connection.execute_wrappers:
        # First, not last: a connection opened inside someone's `execute_wrapper()` block would
        # otherwise lose this wrapper when that block pops "its" last one.
        connection.execute_wrappers.insert(0, _watch_writes)


def connect() -> None:
    """Watch every database connection's writes (from the app's ready())."""
    connection_created.connect(_install, dispatch_uid="keycache-watch-writes")
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        _install(None, conn)

"""Rate limits of Amperio's API from AMPERIO_RATE_LIMITS, counted atomically in Redis when
AMPERIO_REDIS_URL is set (every API process shares the count), else in this process.

Scopes: `service` per service token, `anon` per client address for calls without one (schema,
docs), `auth_failure` per client address for failed authentications. Windows are fixed,
starting at the first call; a call that would pass the limit is refused without being counted.
The same design as Enexa's throttles: one script (shared.ratelimit) checks and adds."""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from typing import Any

from rest_framework import exceptions
from rest_framework.throttling import BaseThrottle

from amperio.api.network import client_ip
from amperio.settings import Settings, get_settings
from shared.ratelimit import CHECK_AND_ADD, LocalCounters

logger = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _redis(url: str) -> tuple[Any, Any]:
    import redis

    # Short timeouts: a call never waits long for its counter.
    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    return client, client.register_script(CHECK_AND_ADD)


local_counters = LocalCounters()


def _key(settings: Settings, scope: str, ident: str) -> str:
    return f"{settings.rate_limit_prefix}:{scope}:{ident}"


def _redis_down(exc: Exception) -> None:
    logger.warning(
        "rate limit counter in Redis unavailable (%s); counting locally", type(exc).__name__
    )


def check_and_add(settings: Settings, key: str, cost: int, limit: int, window_s: int):
    """(allowed, seconds until the window ends) after counting `cost` for `key` if allowed."""
    if settings.redis_url:
        try:
            _, script = _redis(settings.redis_url)
            allowed, ttl_ms = script(keys=[key], args=[cost, limit, window_s * 1000])
            return bool(allowed), int(ttl_ms) / 1000
        except Exception as exc:  # noqa: BLE001 - Redis down: count locally rather than fail
            _redis_down(exc)
    return local_counters.check_and_add(key, cost, limit, window_s)


def count(settings: Settings, key: str) -> tuple[int, float]:
    """(what `key` has counted in its window, seconds until the window ends), adding nothing."""
    if settings.redis_url:
        try:
            client, _ = _redis(settings.redis_url)
            current, ttl_ms = client.pipeline().get(key).pttl(key).execute()
            return int(current or 0), max(int(ttl_ms), 0) / 1000
        except Exception as exc:  # noqa: BLE001 - Redis down: count locally rather than fail
            _redis_down(exc)
    return local_counters.peek(key)


def _refuse(wait_s: float, detail: str | None = None) -> exceptions.Throttled:
    return exceptions.Throttled(wait=max(1, math.ceil(wait_s)), detail=detail)


AUTH_FAILURES = "Too many failed authentications from this address; retry later."


def refuse_if_failing(request: Any) -> None:
    """429 before any token is compared while the caller's address is past its failed
    authentications: a correct guess made then would otherwise still get through."""
    settings = get_settings()
    rate = settings.rate_limits.get("auth_failure")
    if not rate:
        return
    limit, _ = rate
    failures, remaining_s = count(settings, _key(settings, "auth_failure", _ip(request)))
    if failures >= limit:
        raise _refuse(remaining_s, AUTH_FAILURES)


def note_auth_failure(request: Any) -> None:
    """Count a missing, wrong or expired token against the caller's address."""
    settings = get_settings()
    rate = settings.rate_limits.get("auth_failure")
    if rate:
        ident = _ip(request)
        check_and_add(settings, _key(settings, "auth_failure", ident), 1, *rate)
        logger.info("failed authentication from %s", ident)


def _ip(request: Any) -> str:
    return f"ip:{client_ip(request)}"


class CallerRateThrottle(BaseThrottle):
    """`service` per token name once authenticated, else `anon` per client address."""

    def allow_request(self, request: Any, view: Any) -> bool:
        settings = get_settings()
        principal = request.user
        if principal is not None:
            scope, ident = "service", f"token:{principal.name}"
        else:
            scope, ident = "anon", _ip(request)
        self._wait: int | None = None
        rate = settings.rate_limits.get(scope)
        if not rate:
            return True
        allowed, remaining_s = check_and_add(settings, _key(settings, scope, ident), 1, *rate)
        if not allowed:
            self._wait = max(1, math.ceil(remaining_s))
            logger.info("rate limit %s reached by %s", scope, ident)
        return allowed

    def wait(self) -> int | None:
        return self._wait

"""Per-principal rate limits from ENEXA_RATE_LIMITS, counted atomically in Redis when REDIS_URL
is set (every server process shares the count), else in this process.

DRF's own throttles read, then write, a cache entry: two processes can both pass. Here one Lua
script checks and adds in a single Redis step. Windows are fixed, starting at a principal's
first call; a call that would pass the limit is refused without being counted."""

import logging
import math
from functools import lru_cache

from django.conf import settings
from django.db import connection
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

from enexa.core.network import client_ip
from enexa.core.principals import is_controller
from shared.ratelimit import CHECK_AND_ADD, CHECK_AND_ADD_FUNCTION, LocalCounters, parse_rate

logger = logging.getLogger(__name__)

# Scopes that are keyed by address: the caller has no identity yet.
ADDRESS_SCOPES = {"anon", "login", "register"}


def throttle_cost(request) -> int:
    """What a call counts for: a batch (`{"items": [...]}`) counts its items, so batching
    cannot bypass a limit; anything else counts 1."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return 1
    try:
        body = request._request.body  # cached by Django; DRF parses from the cached copy
    except Exception:  # noqa: BLE001 - too big or already streamed: count it as one call
        return 1
    if b'"items"' not in body:  # cheap test before parsing
        return 1
    # DRF keeps what it parses: the view reads the same `request.data`, so a batch is parsed
    # once. A malformed body raises ParseError here, the same 400 the view would give.
    return cost_of(request.data)


def cost_of(data) -> int:
    """What a parsed body counts for: a batch its items, anything else 1."""
    items = data.get("items") if isinstance(data, dict) else None
    return max(1, len(items)) if isinstance(items, list) else 1


def scope_and_ident(request, view) -> tuple[str, str]:
    from rest_framework_simplejwt.views import TokenViewBase

    user = request.user
    scope = getattr(view, "throttle_scope", None)
    if scope is None:
        if isinstance(view, TokenViewBase):
            scope = "login"
        elif is_controller(user):
            scope = "controller"
        elif user is not None and user.is_authenticated:
            scope = "user"
        else:
            scope = "anon"
    if scope in ADDRESS_SCOPES:
        return scope, f"ip:{client_ip(request)}"
    if is_controller(user):
        return scope, f"controller:{user.controller_code}"
    return scope, f"user:{user.pk}"


@lru_cache(maxsize=4)
def _redis(url: str):
    import redis

    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    return client, client.register_script(CHECK_AND_ADD)


@lru_cache(maxsize=4)
def _count_if_current_script(url: str):
    return _redis(url)[0].register_script(COUNT_IF_CURRENT)


def redis_client():
    """The Redis client of REDIS_URL (short timeouts: a call never waits long for it)."""
    return _redis(settings.REDIS_URL)[0]


local_counters = LocalCounters()


def key_prefix() -> str:
    # Namespaced by database, so servers on different databases (tests, staging) never share.
    return f"{settings.ENEXA_RATE_LIMIT_PREFIX}:{connection.settings_dict['NAME']}"


def check_and_add(key: str, cost: int, limit: int, window_s: int) -> tuple[bool, float]:
    """(allowed, seconds until the window ends) after counting `cost` for `key` if allowed."""
    if settings.REDIS_URL:
        try:
            _, script = _redis(settings.REDIS_URL)
            allowed, ttl_ms = script(keys=[key], args=[cost, limit, window_s * 1000])
            return bool(allowed), int(ttl_ms) / 1000
        except Exception as exc:  # noqa: BLE001 - Redis down: count locally rather than fail
            logger.warning(
                "rate limit counter in Redis unavailable (%s); counting locally", type(exc).__name__
            )
    return local_counters.check_and_add(key, cost, limit, window_s)


def peek(key: str, also: str | None = None) -> tuple[int, float, bytes | None]:
    """(count, seconds until the window ends) of `key`, counting nothing, and the value of the
    key `also` read in the same round trip (None without Redis)."""
    if settings.REDIS_URL:
        try:
            client, _ = _redis(settings.REDIS_URL)
            pipeline = client.pipeline(transaction=False).get(key).pttl(key)
            if also is not None:
                pipeline.get(also)
            count, ttl_ms, *value = pipeline.execute()
            return int(count or 0), max(0, int(ttl_ms)) / 1000, value[0] if value else None
        except Exception as exc:  # noqa: BLE001 - Redis down: count locally rather than fail
            logger.warning(
                "rate limit counter in Redis unavailable (%s); counting locally", type(exc).__name__
            )
    return (*local_counters.peek(key), None)


def reset_counters() -> None:
    """Forget every count (tests)."""
    local_counters.clear()
    if settings.REDIS_URL:
        client, _ = _redis(settings.REDIS_URL)
        try:
            for key in client.scan_iter(match=f"{key_prefix()}:*", count=1000):
                client.delete(key)
        except Exception as exc:  # noqa: BLE001 - nothing counted there while it is down
            logger.warning("rate limit counters in Redis not reset: %s", type(exc).__name__)


class PrincipalRateThrottle(BaseThrottle):
    """The limit of the call's scope (controller, user, anon, login, register, or a view's
    `throttle_scope`) from settings.ENEXA_RATE_LIMITS; a scope set to None is not limited."""

    def allow_request(self, request, view) -> bool:
        if getattr(request._request, "enexa_call_counted", False):
            return True  # counted by the ingest fast path, which left the answer to DRF
        scope, ident = scope_and_ident(request, view)
        if not settings.ENEXA_RATE_LIMITS.get(scope):
            return True  # without a limit the body is not parsed for its cost
        self._wait = count_call(scope, ident, throttle_cost(request))
        return self._wait is None

    def wait(self):
        return self._wait


def count_call(scope: str, ident: str, cost: int) -> int | None:
    """Count a call of `cost` against the scope's limit: None when it fits (and is counted),
    else the seconds to wait (and nothing is counted)."""
    rate = settings.ENEXA_RATE_LIMITS.get(scope)
    if not rate:
        return None
    limit, window_s = parse_rate(rate)
    allowed, remaining_s = check_and_add(f"{key_prefix()}:{scope}:{ident}", cost, limit, window_s)
    return None if allowed else _refused(scope, rate, ident, remaining_s)


def _refused(scope: str, rate: str, ident: str, remaining_s: float) -> int:
    """The seconds to wait, for a call over its scope's limit."""
    logger.info("rate limit %s (%s) reached by %s", scope, rate, ident)
    return max(1, math.ceil(remaining_s))


# --- failed authentication, per client address ------------------------------------------------

AUTH_FAILURE_SCOPE = "auth_failure"
AUTH_FAILURE_DETAIL = "Too many failed authentication attempts from this address."


def _auth_failure_limit(request) -> tuple[str, int, int] | None:
    """(counter key, limit, window) of the caller's address; None when not limited."""
    rate = settings.ENEXA_RATE_LIMITS.get(AUTH_FAILURE_SCOPE)
    if not rate:
        return None
    limit, window_s = parse_rate(rate)
    return f"{key_prefix()}:{AUTH_FAILURE_SCOPE}:ip:{client_ip(request)}", limit, window_s


def refuse_after_auth_failures(request, *, also: str | None = None) -> bytes | None:
    """Raise Throttled (429) when the caller's address has used up its failed authentications
    in the current window: checked before a credential is, so that guessing stops there
    (a right guess would answer the same 429). With `also`, answers that Redis key's value,
    read in the same round trip (the ingest fast path reads the API-key cache's generation);
    None when it was not read."""
    limited = _auth_failure_limit(request)
    if limited is None:
        return None  # nothing to read: the caller reads `also` itself
    key, limit, _ = limited
    count, remaining_s, value = peek(key, also)
    if count >= limit:
        logger.info("failed authentications from %s over their limit", client_ip(request))
        raise Throttled(wait=max(1, math.ceil(remaining_s)), detail=AUTH_FAILURE_DETAIL)
    return value


def count_auth_failure(request) -> None:
    """Count a failed authentication of the caller's address; raise Throttled when it was over
    the limit already (a race with another request)."""
    limited = _auth_failure_limit(request)
    if limited is None:
        return
    key, limit, window_s = limited
    allowed, remaining_s = check_and_add(key, 1, limit, window_s)
    if not allowed:
        raise Throttled(wait=max(1, math.ceil(remaining_s)), detail=AUTH_FAILURE_DETAIL)


# --- a call's checks in one round trip, for a principal the API-key cache already holds ------

# KEYS: the address's failed authentications, the key cache's generation, the principal's
# counter; ARGV: the address's failure limit, the generation the cached key was read under,
# then check_and_add's cost, limit and window. Counts only when the address is under its
# failure limit and that generation is still current -> check_and_add's answer, else {-1, 0}.
COUNT_IF_CURRENT = (
    CHECK_AND_ADD_FUNCTION
    + """
local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
if failures >= tonumber(ARGV[1]) or redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return {-1, 0}
end
return check_and_add(KEYS[3], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
"""
)


class NotCounted(Exception):
    """count_call_if_current did not apply, and counted nothing: the caller takes the usual
    steps (refuse_after_auth_failures, the key check, count_call)."""


def count_call_if_current(
    request, scope: str, ident: str, cost: int, *, generation_key: str, generation: bytes
) -> int | None:
    """refuse_after_auth_failures and count_call in one Redis round trip, for a caller
    authenticated by a cached API key read under `generation` (the key at `generation_key`):
    None when the call fits and is counted, else the seconds to wait (nothing counted).

    Raises NotCounted, having counted nothing, when the address is over its failed
    authentications, the generation has moved on (the cached key may have changed), a limit is
    not set, or Redis is unavailable."""
    failures = _auth_failure_limit(request)
    rate = settings.ENEXA_RATE_LIMITS.get(scope)
    if not settings.REDIS_URL or failures is None or not rate:
        raise NotCounted
    failures_key, failure_limit, _ = failures
    limit, window_s = parse_rate(rate)
    try:
        counted, ttl_ms = _count_if_current_script(settings.REDIS_URL)(
            keys=[failures_key, generation_key, f"{key_prefix()}:{scope}:{ident}"],
            args=[failure_limit, generation, cost, limit, window_s * 1000],
        )
    except Exception as exc:  # noqa: BLE001 - the usual steps count locally without Redis
        logger.warning("rate limit counter in Redis unavailable (%s)", type(exc).__name__)
        raise NotCounted from exc
    if counted < 0:
        raise NotCounted
    return None if counted else _refused(scope, rate, ident, int(ttl_ms) / 1000)

"""Rate limits as both sides write and count them: a rate like `100/min` and the Redis script
that checks and adds in one step (so two server processes can never both pass the limit).
Standard library only: each side loads the script into its own Redis client."""

from __future__ import annotations

import re
import threading
import time
from functools import lru_cache

RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# check_and_add(counter key, cost, limit, window_ms) -> {allowed 0|1, ms until the window ends}.
# Windows are fixed, starting at the first call; a call that would pass the limit is refused
# without being counted. A Lua function, so that other scripts can count with it too.
CHECK_AND_ADD_FUNCTION = """
local function check_and_add(key, cost, limit, window_ms)
  local current = tonumber(redis.call('GET', key) or '0')
  if current + cost > limit then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then ttl = window_ms end
    return {0, ttl}
  end
  redis.call('INCRBY', key, cost)
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then
    redis.call('PEXPIRE', key, window_ms)
    ttl = window_ms
  end
  return {1, ttl}
end
"""
# KEYS[1] counter; ARGV cost, limit, window_ms.
CHECK_AND_ADD = (
    CHECK_AND_ADD_FUNCTION
    + "return check_and_add(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))\n"
)


@lru_cache(maxsize=32)
def parse_rate(rate: str) -> tuple[int, int]:
    """'100/min' -> (100, 60); '10/5m' -> (10, 300)."""
    match = RATE.match(rate or "")
    if not match:
        raise ValueError(f"'{rate}' is not a rate like '100/min'.")
    count, multiple, unit = match.groups()
    return int(count), int(multiple or 1) * UNIT_S[unit[0]]


class LocalCounters:
    """The same counting within one process: the fallback without Redis (or while it is down),
    exact only where one process serves every call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.windows: dict[str, tuple[int, float]] = {}

    def check_and_add(self, key: str, cost: int, limit: int, window_s: int) -> tuple[bool, float]:
        """(allowed, seconds until the window ends) after counting `cost` if allowed."""
        now = time.monotonic()
        with self.lock:
            count, ends = self.windows.get(key, (0, now + window_s))
            if ends <= now:
                count, ends = 0, now + window_s
            if count + cost > limit:
                return False, ends - now
            self.windows[key] = (count + cost, ends)
            return True, ends - now

    def peek(self, key: str) -> tuple[int, float]:
        """(count, seconds until the window ends) of `key`, counting nothing; (0, 0.0) when
        no window is open."""
        now = time.monotonic()
        with self.lock:
            count, ends = self.windows.get(key, (0, now))
        return (count, ends - now) if ends > now else (0, 0.0)

    def clear(self) -> None:
        with self.lock:
            self.windows.clear()

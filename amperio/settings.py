"""Amperio's settings, read once from the environment (every variable: docs/configuration.md)."""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from shared.logs import LOG_FORMATS
from shared.ratelimit import parse_rate

REPO_DIR = Path(__file__).resolve().parent.parent
DEFAULT_BACKLOG_DELAY_S = (1.0, 10.0)

# Limits of Amperio's API per scope, as (calls, window in seconds); None = not limited.
# service: per service token; anon: per client address without a token (schema, docs);
# auth_failure: failed authentications per client address.
DEFAULT_RATE_LIMITS = {"service": "6000/min", "anon": "120/min", "auth_failure": "20/min"}


def _list(name: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in os.environ.get(name, "").split(",") if v.strip())


def _range(name: str, default: tuple[float, float]) -> tuple[float, float]:
    """`low,high` seconds, 0 <= low <= high, both finite (an endless delay is no delay)."""
    values = _list(name)
    if not values:
        return default
    try:
        low, high = (float(v) for v in values)
    except ValueError:
        raise ValueError(f"{name} must be two numbers of seconds, low,high") from None
    if not 0 <= low <= high < math.inf:
        raise ValueError(f"{name} must be two finite numbers of seconds, 0 <= low <= high")
    return low, high


@dataclass(frozen=True)
class ServiceToken:
    """A bearer token Enexa may present: its name (what logs and the audit show), the secret
    (never shown: kept out of repr) and when it stops being accepted (None: never)."""

    name: str
    secret: str = field(repr=False)
    expires_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def parse_service_tokens(value: str) -> tuple[ServiceToken, ...]:
    """`AMPERIO_SERVICE_TOKENS`: comma-separated `token`, `name:token` or
    `name:token:expires_at` (RFC 3339 with an offset). A bare token is named by its position
    (`token1`, ...), as configurations written before names and expiry existed."""
    tokens = []
    for position, entry in enumerate((v.strip() for v in value.split(",") if v.strip()), 1):
        parts = entry.split(":", 2)
        name, secret = (f"token{position}", parts[0]) if len(parts) == 1 else parts[:2]
        if not name or not secret:
            raise ValueError(f"AMPERIO_SERVICE_TOKENS entry {position}: empty name or token.")
        expires_at = None
        if len(parts) == 3:
            try:
                expires_at = datetime.fromisoformat(parts[2].replace("Z", "+00:00"))
                if expires_at.tzinfo is None:
                    raise ValueError("no offset")
                expires_at = expires_at.astimezone(UTC)
            except (ValueError, OverflowError):
                # The token's name only: the message may reach a log.
                raise ValueError(
                    f"AMPERIO_SERVICE_TOKENS {name}: expiry must be RFC 3339 with an offset."
                ) from None
        tokens.append(ServiceToken(name, secret, expires_at))
    return tuple(tokens)


def parse_rate_limits(value: str) -> dict[str, tuple[int, int] | None]:
    """`AMPERIO_RATE_LIMITS` (`service=600/min,anon=none`) over the defaults."""
    rates: dict[str, str | None] = dict(DEFAULT_RATE_LIMITS)
    for item in (v.strip() for v in value.split(",") if v.strip()):
        scope, _, rate = item.partition("=")
        if scope.strip() not in DEFAULT_RATE_LIMITS:
            raise ValueError(f"AMPERIO_RATE_LIMITS: unknown scope '{scope.strip()}'.")
        rates[scope.strip()] = None if rate.strip() in ("", "none") else rate.strip()
    return {scope: parse_rate(rate) if rate else None for scope, rate in rates.items()}


def _networks(name: str) -> tuple[str, ...]:
    """A CIDR list, checked at start so a typo fails loudly instead of locking callers out."""
    try:
        return tuple(str(ipaddress.ip_network(v, strict=False)) for v in _list(name))
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


@dataclass(frozen=True)
class Settings:
    """Where this gateway's state lives, how it reaches Enexa, its broker and its ChargePosts."""

    site_id: str
    enexa_url: str
    state_dir: Path
    key_file: Path
    broker_url: str
    # Bearer tokens Enexa may use on /v1/dispatch; several at once so they can be rotated.
    service_tokens: tuple[ServiceToken, ...]
    # Used until the configuration from Enexa names the ChargePost's address.
    modbus_host: str
    modbus_port: int
    modbus_device_id: int
    http_timeout_s: float
    # After Enexa is back, the backlog waits a random delay in this range (spreading gateways).
    backlog_delay_s: tuple[float, float] = DEFAULT_BACKLOG_DELAY_S
    extra: dict[str, str] = field(default_factory=dict)
    # The API's guards (docs/security.md): rate limits counted in Redis when it is set (shared
    # by every API process), callers' address allowlist, proxies whose X-Forwarded-For is
    # believed, and how long audit rows are kept.
    rate_limits: dict[str, tuple[int, int] | None] = field(
        default_factory=lambda: parse_rate_limits("")
    )
    redis_url: str = ""
    rate_limit_prefix: str = "amperio:ratelimit"
    ip_allowlist: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    audit_retention_days: int = 365
    # One backend for many sites (docs/architecture.md): the shared store (postgres:// or
    # sqlite:///; unset: this API serves its own gateway's site from the local command table),
    # sites served before their gateway first reports, and after how long a silent gateway
    # makes its site degraded.
    database_url: str = field(default="", repr=False)  # may hold a password
    sites: tuple[str, ...] = ()
    silent_after_s: float = 30.0
    # On a gateway: send outcomes, limits and health to the backend on `amperio.backend`.
    backend_reports: bool = False
    # GET /metrics: open when empty, else only with this bearer token.
    metrics_token: str = field(default="", repr=False)
    # Logs of every Amperio process: `plain` lines or one JSON object per line (`json`).
    log_format: str = "plain"
    log_level: str = "INFO"
    # Before every key on a Redis broker: systems sharing one Redis database (staging beside
    # production, parallel test runs) never see each other's queues.
    broker_key_prefix: str = ""

    @property
    def site_queue(self) -> str:
        return f"amperio.site.{self.site_id}"

    @property
    def watchdog_queue(self) -> str:
        # Per site, under the site's name: on a shared broker one gateway's watchdog worker
        # must never take another's heartbeat, and the site's broker user covers both queues.
        return f"{self.site_queue}.watchdog"

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "outbox.sqlite3"

    @property
    def commands_path(self) -> Path:
        return self.state_dir / "commands.sqlite3"

    @property
    def state_path(self) -> Path:
        return self.state_dir / "state.sqlite3"

    @property
    def metrics_path(self) -> Path:
        return self.state_dir / "metrics.sqlite3"

    @property
    def audit_path(self) -> Path:
        return self.state_dir / "audit.sqlite3"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "config.json"

    def api_key(self) -> str | None:
        """The controller's Enexa API key, kept in a file only its user can read."""
        try:
            return self.key_file.read_text().strip() or None
        except FileNotFoundError:
            return None


def load() -> Settings:
    state_dir = Path(os.environ.get("AMPERIO_STATE_DIR", REPO_DIR / "var" / "amperio"))
    return Settings(
        site_id=os.environ.get("AMPERIO_SITE_ID", "SITE001"),
        enexa_url=os.environ.get("AMPERIO_ENEXA_URL", "http://127.0.0.1:8000").rstrip("/"),
        state_dir=state_dir,
        key_file=Path(os.environ.get("AMPERIO_KEY_FILE", state_dir / "api_key")),
        broker_url=os.environ.get(
            "CELERY_BROKER_URL", f"filesystem://localhost/{state_dir / 'broker'}"
        ),
        service_tokens=parse_service_tokens(os.environ.get("AMPERIO_SERVICE_TOKENS", "")),
        modbus_host=os.environ.get("AMPERIO_MODBUS_HOST", "127.0.0.1"),
        modbus_port=int(os.environ.get("AMPERIO_MODBUS_PORT", "502")),
        modbus_device_id=int(os.environ.get("AMPERIO_MODBUS_DEVICE_ID", "1")),
        http_timeout_s=float(os.environ.get("AMPERIO_HTTP_TIMEOUT_S", "5")),
        rate_limits=parse_rate_limits(os.environ.get("AMPERIO_RATE_LIMITS", "")),
        redis_url=os.environ.get("AMPERIO_REDIS_URL", ""),
        rate_limit_prefix=os.environ.get("AMPERIO_RATE_LIMIT_PREFIX", "amperio:ratelimit"),
        ip_allowlist=_networks("AMPERIO_API_IP_ALLOWLIST"),
        trusted_proxies=_networks("AMPERIO_TRUSTED_PROXIES"),
        audit_retention_days=int(os.environ.get("AMPERIO_AUDIT_RETENTION_DAYS", "365")),
        database_url=os.environ.get("AMPERIO_DATABASE_URL", ""),
        sites=_list("AMPERIO_SITES"),
        silent_after_s=float(os.environ.get("AMPERIO_SILENT_AFTER_S", "30")),
        backend_reports=os.environ.get("AMPERIO_BACKEND_REPORTS", "0") == "1",
        backlog_delay_s=_range("AMPERIO_BACKLOG_DELAY_S", DEFAULT_BACKLOG_DELAY_S),
        metrics_token=os.environ.get("AMPERIO_METRICS_TOKEN", ""),
        log_format=_log_format(),
        log_level=os.environ.get("AMPERIO_LOG_LEVEL", "INFO"),
        broker_key_prefix=os.environ.get("AMPERIO_BROKER_KEY_PREFIX", ""),
    )


def _log_format() -> str:
    value = os.environ.get("AMPERIO_LOG_FORMAT", "plain")
    if value not in LOG_FORMATS:
        raise ValueError(f"AMPERIO_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}.")
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; tests call `load()` or clear this cache after changing env."""
    return load()

"""Amperio's settings, read once from the environment (every variable: docs/configuration.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
DEFAULT_BACKLOG_DELAY_S = (1.0, 10.0)


def _list(name: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in os.environ.get(name, "").split(",") if v.strip())


def _range(name: str, default: tuple[float, float]) -> tuple[float, float]:
    """`low,high` seconds, 0 <= low <= high."""
    values = _list(name)
    if not values:
        return default
    try:
        low, high = (float(v) for v in values)
    except ValueError:
        raise ValueError(f"{name} must be two numbers of seconds, low,high") from None
    if not 0 <= low <= high:
        raise ValueError(f"{name} must be two numbers of seconds with 0 <= low <= high")
    return low, high


@dataclass(frozen=True)
class Settings:
    """Where this gateway's state lives, how it reaches Enexa, its broker and its ChargePosts."""

    site_id: str
    enexa_url: str
    state_dir: Path
    key_file: Path
    broker_url: str
    # Bearer tokens Enexa may use on /v1/dispatch; several at once so they can be rotated.
    service_tokens: tuple[str, ...]
    # Used until the configuration from Enexa names the ChargePost's address.
    modbus_host: str
    modbus_port: int
    modbus_device_id: int
    http_timeout_s: float
    # After Enexa is back, the backlog waits a random delay in this range (spreading gateways).
    backlog_delay_s: tuple[float, float] = DEFAULT_BACKLOG_DELAY_S
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def site_queue(self) -> str:
        return f"amperio.site.{self.site_id}"

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
        service_tokens=_list("AMPERIO_SERVICE_TOKENS"),
        modbus_host=os.environ.get("AMPERIO_MODBUS_HOST", "127.0.0.1"),
        modbus_port=int(os.environ.get("AMPERIO_MODBUS_PORT", "502")),
        modbus_device_id=int(os.environ.get("AMPERIO_MODBUS_DEVICE_ID", "1")),
        http_timeout_s=float(os.environ.get("AMPERIO_HTTP_TIMEOUT_S", "5")),
        backlog_delay_s=_range("AMPERIO_BACKLOG_DELAY_S", DEFAULT_BACKLOG_DELAY_S),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; tests call `load()` or clear this cache after changing env."""
    return load()

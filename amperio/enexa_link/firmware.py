"""Firmware updates from Enexa: check, download, verify the sha256, install (simulated), report.

An update counts as done only when the new version runs after the (simulated) reboot, so `ok`
is reported with the new version as `current_version`; a download whose sha256 does not match
is refused, nothing is installed, and `failed` is reported with why."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from amperio.enexa_link.client import EnexaError, EnexaUnavailable
from amperio.state import StateKey
from shared.fields import format_timestamp

logger = logging.getLogger(__name__)

_VERSION = re.compile(r"^v?(\d+(?:\.\d+)*)(?:-([0-9A-Za-z.-]+))?(?:\+.*)?$")


class FirmwareSource(Protocol):
    """What an update needs from `amperio.enexa_link.client.EnexaClient`."""

    def firmware_latest(self, controller_id: str) -> dict[str, Any] | None: ...

    def download(self, url: str) -> bytes: ...

    def report_firmware(
        self, controller_id: str, current_version: str, status: str, error: str | None = None
    ) -> dict[str, Any]: ...


# step(name, status, message, data): one step of an update, as it happens.
Step = Callable[[str, str, str, dict[str, Any]], None]


class StateStore(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...

    def update(self, values: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class FirmwareResult:
    """What a check did: `up_to_date`, `none` (no release), `updated` or `failed`."""

    outcome: str
    version: str
    detail: str = ""


def version_key(version: str) -> tuple[tuple[int, ...], int, tuple[Any, ...]]:
    """A sort key in semantic-version order: 2.10.0 > 2.9.0, and 2.1.0-beta < 2.1.0."""
    match = _VERSION.match(version.strip())
    if not match:
        raise ValueError(f"Not a version: {version!r}")
    numbers = tuple(int(part) for part in match.group(1).split("."))
    numbers = numbers + (0,) * (3 - len(numbers))
    pre = match.group(2)
    if pre is None:
        return numbers, 1, ()
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return numbers, 0, parts


def is_newer(candidate: str, current: str) -> bool:
    try:
        return version_key(candidate) > version_key(current)
    except ValueError:
        return False  # an unreadable version is never taken as an upgrade


def check_and_update(
    client: FirmwareSource,
    controller_id: str,
    current_version: str,
    state: StateStore,
    now: datetime | None = None,
    step: Step | None = None,
) -> FirmwareResult:
    """Install the latest release for this controller if it is newer than what runs.

    `step(name, status, message, data)` is told each step (download, verify, install, result):
    the gateway makes each a `firmware` event (amperio.telemetry.events.firmware_steps)."""
    latest = client.firmware_latest(controller_id)
    if not latest or not latest.get("version"):
        return FirmwareResult("none", current_version)
    version = str(latest["version"])
    if not is_newer(version, current_version):
        return FirmwareResult("up_to_date", current_version)
    said = step or _silent
    versions = {"from_version": current_version, "to_version": version}
    logger.info("firmware %s -> %s for %s: downloading", current_version, version, controller_id)
    said("download", "started", f"Downloading firmware {version}.", versions)
    client.report_firmware(controller_id, current_version, "downloading")
    try:
        image = client.download(str(latest["url"]))
    except EnexaUnavailable:
        said("download", "interrupted", f"Download of {version} interrupted: Enexa away.", versions)
        raise  # Enexa is away: the next check tries again, nothing to report as failed
    except EnexaError as exc:
        why = f"Download failed: {exc}"
        return _failed(client, controller_id, current_version, version, why, said)
    said("download", "ok", f"Downloaded {version}: {len(image)} bytes.", versions)
    expected = str(latest.get("sha256") or "").strip().lower()
    actual = hashlib.sha256(image).hexdigest()
    if not expected or not hmac.compare_digest(actual, expected):
        why = (
            f"sha256 mismatch for {version}: expected {expected or '(none)'}, got {actual}; "
            "not installed."
        )
        said("verify", "failed", why, versions)
        return _failed(client, controller_id, current_version, version, why, said)
    said("verify", "ok", f"sha256 of {version} verified.", versions)
    said("install", "started", f"Installing {version}.", versions)
    client.report_firmware(controller_id, current_version, "installing")
    running = install(state, version, len(image), now or datetime.now(UTC))
    client.report_firmware(controller_id, running, "ok")
    logger.info("firmware %s running on %s", running, controller_id)
    said("result", "ok", f"Firmware {running} running.", {**versions, "running": running})
    return FirmwareResult("updated", running)


def install(state: StateStore, version: str, size: int, now: datetime) -> str:
    """Simulated install and reboot: the new version is what runs afterwards."""
    previous = state.get(StateKey.FIRMWARE_VERSION)
    state.update(
        {
            StateKey.FIRMWARE_VERSION: version,
            StateKey.FIRMWARE_PREVIOUS_VERSION: previous,
            StateKey.FIRMWARE_INSTALLED_AT: format_timestamp(now),
            StateKey.FIRMWARE_IMAGE_BYTES: size,
        }
    )
    # After the "reboot" the running version is read back, as a real unit would report it.
    return str(state.get(StateKey.FIRMWARE_VERSION))


def _silent(name: str, status: str, message: str, data: dict[str, Any]) -> None:
    """No one to tell of the steps."""


def _failed(
    client: FirmwareSource, controller_id: str, current: str, version: str, why: str, step: Step
) -> FirmwareResult:
    logger.warning("firmware %s refused for %s: %s", version, controller_id, why)
    step(
        "result",
        "failed",
        why,
        {"from_version": current, "to_version": version, "running": current, "error": why},
    )
    client.report_firmware(controller_id, current, "failed", error=why)
    return FirmwareResult("failed", current, why)

"""This process's handles on the gateway (state, outbox, Enexa, ChargePosts) and its cycles.

The tasks call one function each from here. Handles are made once per process (Celery's
prefork children each get their own, never one inherited through fork) and reused, so a task
every second does not reconnect to the ChargePost or reopen SQLite."""

from __future__ import annotations

import fcntl
import functools
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from amperio import configsync, status
from amperio.chargeposts import Endpoint, connect, endpoints
from amperio.enexa_client import EnexaClient, EnexaError, EnexaUnavailable
from amperio.settings import Settings, get_settings
from amperio.state import GatewayState

log = logging.getLogger(__name__)

# Periodic tasks are retried by the schedule itself: a short retry inside a task is enough, so
# that an Enexa outage never holds a worker process for long.
ENEXA_TASK_RETRIES = 1


class Gateway:
    """Lazily opened handles of one process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.pid = os.getpid()
        self.state = GatewayState(settings.state_path)
        self._config_file = configsync.ConfigFile(settings.config_path)
        self._outbox: Any = None
        self._flusher: Any = None
        self._commands: Any = None
        self._enexa: EnexaClient | None = None
        self._clients: dict[Endpoint, Any] = {}

    def config(self) -> dict[str, Any]:
        """The applied configuration, parsed again only after the config sync replaced it (so
        a new version holds from the next cycle on); shared by every caller: do not change it."""
        return self._config_file.load()

    def outbox(self) -> Any:
        if self._outbox is None:
            from amperio.outbox import Outbox

            self._outbox = Outbox(self.settings.outbox_path)
        return self._outbox

    def enexa(self) -> EnexaClient:
        # The key is re-read each time: provisioning or a rotation may have replaced it.
        if self._enexa is None:
            self._enexa = EnexaClient(
                self.settings.enexa_url,
                timeout_s=self.settings.http_timeout_s,
                max_retries=ENEXA_TASK_RETRIES,
                max_retry_after_s=5.0,
            )
        self._enexa.api_key = self.settings.api_key()
        return self._enexa

    def chargeposts(self, config: dict[str, Any]) -> list[Any]:
        """A client per configured ChargePost; clients for addresses no longer configured close."""
        wanted = endpoints(self.settings, config)
        for endpoint in [e for e in self._clients if e not in wanted]:
            self._clients.pop(endpoint).close()
        for endpoint in wanted:
            if endpoint not in self._clients:
                self._clients[endpoint] = connect(endpoint)
        return [self._clients[e] for e in wanted]

    def commands(self) -> Any:
        if self._commands is None:
            from amperio.commands import CommandStore

            self._commands = CommandStore(self.settings.commands_path)
        return self._commands

    def flusher(self) -> Any:
        if self._flusher is None:
            from amperio.flusher import Flusher

            client = self.enexa
            batch_size = int(self.config()["settings"]["telemetry"]["batch_size"])
            self._flusher = Flusher(
                self.outbox(),
                lambda items: client().post_telemetry(items),
                lambda items: client().post_events(items),
                batch_size=batch_size,
                jitter_s=self.settings.backlog_delay_s,
                site_id=self.settings.site_id,
            )
        return self._flusher


_gateway: Gateway | None = None


def get_gateway() -> Gateway:
    """This process's Gateway (a new one after a fork)."""
    global _gateway
    if _gateway is None or _gateway.pid != os.getpid():
        _gateway = Gateway(get_settings())
    return _gateway


def _now() -> datetime:
    return datetime.now(UTC)


def exclusive(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a cycle only if the same cycle is not already running in this gateway (any process
    or thread); otherwise skip it (returning None). A slow Enexa then holds at most one worker
    slot per kind of cycle, and the control cycle always finds a free one. The lock is a file
    lock, so it goes with a killed process."""

    @functools.wraps(func)
    def run(gw: Gateway | None = None, now: datetime | None = None) -> Any:
        gw = gw or get_gateway()
        path = gw.settings.state_dir / "locks" / f"{func.__name__}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("%s still running; this run skipped", func.__name__)
                return None
            try:
                return func(gw, now)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    return run


# -- the cycles the tasks run ------------------------------------------------------------------


@exclusive
def run_control_cycle(gw: Gateway | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Read the ChargePosts into the outbox, re-assert setpoint leases, and follow the local
    autonomous policy while Enexa is unreachable."""
    from amperio import collector  # the Modbus stack loads in the processes that use it
    from amperio.autonomy import CAPPED_KEY, ModeTracker

    gw = gw or get_gateway()
    now = now or _now()
    config = gw.config()
    clients = gw.chargeposts(config)
    reading, snapshots = collector.collect(gw.settings, gw.state, gw.outbox(), clients, now)
    result: dict[str, Any] = {"read": reading is not None, "leases": [], "autonomy": None}
    # Setpoints, leases and autonomy act on the first ChargePost, with what it just answered.
    client, snapshot = clients[0], snapshots[0]
    if snapshot is None:
        return result
    # Autonomy's mode and the chargers it capped, as the last cycle left them: read once for
    # the lease and autonomy steps.
    mode = ModeTracker.stored_mode(gw.state)
    capped: list[str] = gw.state.get(CAPPED_KEY) or []
    result["leases"] = _reassert_leases(gw, client, config, snapshot, now, mode, capped)
    try:  # the leases as re-asserted, for the grid limit and autonomy steps
        leases: list[dict[str, Any]] = gw.commands().leases()
    except Exception:  # both steps are tried again next cycle; the reading is already kept
        log.exception("Reading the setpoint leases failed (site %s)", gw.settings.site_id)
        result["grid_limit_written"] = None
        return result
    result["grid_limit_written"] = _configured_grid_limit(gw, client, config, snapshot, leases)
    result["autonomy"] = _autonomy(gw, client, config, snapshot, now, mode, capped, leases)
    return result


def _reassert_leases(
    gw: Gateway,
    client: Any,
    config: dict[str, Any],
    snapshot: dict[str, Any],
    now: datetime,
    mode: str,
    capped: list[str],
) -> list[dict[str, Any]]:
    from amperio.commands import battery_setpoint_registers

    # While Enexa is away autonomy writes the battery and caps chargers (after this step), so
    # leases leave those registers be.
    held = {f"{name}_power_limit_kw" for name in capped}
    if mode != "normal":
        held |= battery_setpoint_registers(snapshot)
    try:
        leases: list[dict[str, Any]] = gw.commands().reassert_leases(
            client, now=now, config=config, snapshot=snapshot, held_elsewhere=held
        )
        return leases
    except Exception:  # a lease failure must not cost the reading or the watchdog
        log.exception("Re-asserting setpoint leases failed (site %s)", gw.settings.site_id)
        return []


def _autonomy(
    gw: Gateway,
    client: Any,
    config: dict[str, Any],
    snapshot: dict[str, Any],
    now: datetime,
    mode: str,
    capped: list[str],
    leases: list[dict[str, Any]],
) -> dict[str, Any] | None:
    """The autonomy step of every cycle (it decides whether Enexa has been away long enough);
    `mode` and `capped` are what the state held at the start of the cycle."""
    from amperio import autonomy

    try:
        return autonomy.run_cycle(
            client=client,
            state=gw.state,
            config=config,
            snapshot=snapshot,
            outbox=gw.outbox(),
            settings=gw.settings,
            enexa_unreachable_for_s=status.enexa_unreachable_for_s(gw.state, now),
            now=now,
            schedule=gw.commands().active_schedule(now),
            leases=leases,
            mode=mode,
            capped=capped,
        )
    except Exception:  # the decision is retried next cycle; the reading is already kept
        log.exception("Autonomy decision failed (site %s)", gw.settings.site_id)
        return None


def _configured_grid_limit(
    gw: Gateway,
    client: Any,
    config: dict[str, Any],
    snapshot: dict[str, Any],
    leases: list[dict[str, Any]],
) -> float | None:
    """Write the configured grid limit to the unit when it differs from what the unit holds and
    no `set_grid_limit` lease holds the register, so a configuration change reaches the
    hardware."""
    from amperio.commands import configured_grid_limit_kw

    limit = configured_grid_limit_kw(config)
    current = snapshot.get("site_grid_limit_kw")
    if limit is None or (current is not None and abs(current - limit) < 0.05):
        return None
    if any(lease["register"] == "site_grid_limit_kw" for lease in leases):
        return None
    try:
        written = client.write("site_grid_limit_kw", limit)
        return float(written) if written is not None else None
    except Exception:  # tried again next cycle
        log.exception("Writing the configured grid limit failed (site %s)", gw.settings.site_id)
        return None


@exclusive
def flush_outbox(gw: Gateway | None = None, now: datetime | None = None) -> dict[str, int]:
    """Send what the outbox holds; record whether Enexa answered."""
    gw = gw or get_gateway()
    now = now or _now()
    flusher = gw.flusher()
    stats = flusher.run_once(now)
    if stats.get("transient"):
        status.note_enexa_unreachable(gw.state, now, "telemetry flush failed")
    elif stats.get("sent"):
        status.note_enexa_reachable(gw.state, now)
    gw.state.set("buffer_depth", _depth(gw))
    return dict(stats)


def _depth(gw: Gateway) -> int:
    depth = gw.outbox().depth()
    return int(depth["readings"]) + int(depth["events"])


@exclusive
def sync_config(gw: Gateway | None = None, now: datetime | None = None) -> str:
    """Poll Enexa's configuration version; apply a new version."""
    gw = gw or get_gateway()
    now = now or _now()
    try:
        result = configsync.sync_config(gw.enexa(), gw.settings, gw.state, now)
    except EnexaUnavailable as exc:
        status.note_enexa_unreachable(gw.state, now, str(exc))
        return "unreachable"
    except EnexaError as exc:
        log.error("Configuration sync refused (site %s): %s", gw.settings.site_id, exc)
        return "refused"
    status.note_enexa_reachable(gw.state, now)
    return result.outcome


@exclusive
def report_status(gw: Gateway | None = None, now: datetime | None = None) -> bool:
    gw = gw or get_gateway()
    now = now or _now()
    # The depth the last flush recorded: the report needs no handle on the outbox.
    depth = gw.state.get("buffer_depth")
    return status.report_status(gw.enexa(), gw.settings, gw.state, now, depth)


def watchdog_beat(gw: Gateway | None = None, now: datetime | None = None) -> bool:
    """One heartbeat on each ChargePost the gateway drives."""
    from amperio import watchdog

    gw = gw or get_gateway()
    now = now or _now()
    config = gw.config()
    beats = [watchdog.beat(c, gw.state, config, now) for c in gw.chargeposts(config)]
    return all(beats)

"""The one registry of a process's handles on the gateway (state, outbox, commands, Enexa,
ChargePosts), for the workers and the API alike, and the cycles the tasks run.

The tasks call one function each from here. Handles are made once per process and state
directory (Celery's prefork children each get their own, never one inherited through fork) and
reused, so a task every second does not reconnect to the ChargePost or reopen SQLite."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from amperio import health as site_health
from amperio.backend.reports import OutcomeRelay, site_report
from amperio.chargeposts import Endpoint, SiteClient, connect, endpoints, site_client
from amperio.dispatch.errors import CommandError, LimitsUnknown
from amperio.dispatch.limits import configured_grid_limit_kw
from amperio.dispatch.records import APPLIED, FAILED, QUEUED, CommandRecord
from amperio.dispatch.store import CommandStore
from amperio.enexa_link import configsync, status
from amperio.enexa_link.client import EnexaClient, EnexaError, EnexaUnavailable
from amperio.metrics import MetricCounters, record_watchdog_beat
from amperio.modbus import registers
from amperio.settings import Settings, get_settings
from amperio.state import GatewayState, StateKey
from amperio.telemetry import events
from amperio.telemetry.flusher import Flusher
from amperio.telemetry.outbox import Outbox
from shared.fields import format_timestamp

log = logging.getLogger(__name__)

# Periodic tasks are retried by the schedule itself: a short retry inside a task is enough, so
# that an Enexa outage never holds a worker process for long.
ENEXA_TASK_RETRIES = 1

T = TypeVar("T")


class Gateway:
    """Lazily opened handles of one process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.pid = os.getpid()
        self.state = GatewayState(settings.state_path)
        self._config_file = configsync.ConfigFile(settings.config_path)
        self._outbox: Outbox | None = None
        self._flusher: Flusher | None = None
        self._commands: CommandStore | None = None
        self._enexa: EnexaClient | None = None
        self._clients: dict[Endpoint, Any] = {}
        self._extra: dict[str, Any] = {}

    def config(self) -> dict[str, Any]:
        """The applied configuration, parsed again only after the config sync replaced it (so
        a new version holds from the next cycle on); shared by every caller: do not change it."""
        return self._config_file.load()

    def outbox(self) -> Outbox:
        if self._outbox is None:
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

    def commands(self) -> CommandStore:
        if self._commands is None:
            hooks: list[Callable[[CommandRecord], None]] = [
                events.CommandEvents(self.outbox, self.settings.site_id)
            ]
            if self.settings.backend_reports:
                hooks.append(self.backend_relay())

            def on_outcome(record: CommandRecord) -> None:
                for hook in hooks:
                    hook(record)

            self._commands = CommandStore(self.settings.commands_path, on_outcome=on_outcome)
        return self._commands

    def metrics(self) -> MetricCounters:
        """The counters every process of this gateway adds to (GET /metrics reads them)."""
        return self.handle("metrics", lambda: MetricCounters(self.settings.metrics_path))

    def backend_relay(self) -> OutcomeRelay:
        """Outcomes on their way to the backend (AMPERIO_BACKEND_REPORTS=1)."""
        return self.handle(
            "backend-relay",
            lambda: OutcomeRelay(
                self.settings.state_dir / "backend_outbox.sqlite3",
                self.settings.site_id,
                publish,
            ),
        )

    def flusher(self) -> Flusher:
        # The batch size is read at each call: a new `telemetry.batch_size` holds from the
        # next flush, without restarting the worker.
        batch_size = int(self.config()["settings"]["telemetry"]["batch_size"])
        if self._flusher is None:
            client = self.enexa
            self._flusher = Flusher(
                self.outbox(),
                lambda items: client().post_telemetry(items),
                lambda items: client().post_events(items),
                batch_size=batch_size,
                jitter_s=self.settings.backlog_delay_s,
                site_id=self.settings.site_id,
            )
        self._flusher.batch_size = batch_size
        return self._flusher

    def handle(self, name: str, make: Callable[[], T]) -> T:
        """A handle this module does not know by name (the API's audit log), made once."""
        if name not in self._extra:
            self._extra[name] = make()
        handle: T = self._extra[name]
        return handle


# (process, state directory, site) -> its Gateway: the API serves whichever settings it is
# given, the workers those of the environment.
_gateways: dict[tuple[int, str, str], Gateway] = {}
_gateway: Gateway | None = None


def gateway_for(settings: Settings) -> Gateway:
    """This process's Gateway for `settings` (a new one after a fork)."""
    key = (os.getpid(), str(settings.state_dir), settings.site_id)
    if key not in _gateways:
        _gateways[key] = Gateway(settings)
    return _gateways[key]


def get_gateway() -> Gateway:
    """This process's Gateway for the environment's settings, with the outage log installed
    (the workers' gateway; a new one after a fork)."""
    global _gateway
    if _gateway is None or _gateway.pid != os.getpid():
        _gateway = gateway_for(get_settings())
        events.install_outage_log(_gateway.state, _gateway.outbox, _gateway.settings.site_id)
    return _gateway


def _now() -> datetime:
    return datetime.now(UTC)


@contextlib.contextmanager
def _file_lock(gw: Gateway, name: str, *, wait: bool) -> Iterator[bool]:
    """This gateway's lock `name` across its processes and threads (a file lock, so it goes
    with a killed process): yields whether it is held; without `wait` it is not when taken."""
    path = gw.settings.state_dir / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def exclusive(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a cycle only if the same cycle is not already running in this gateway (any process
    or thread); otherwise skip it (returning None). A slow Enexa then holds at most one worker
    slot per kind of cycle, and the control cycle always finds a free one."""

    @functools.wraps(func)
    def run(gw: Gateway | None = None, now: datetime | None = None) -> Any:
        gw = gw or get_gateway()
        with _file_lock(gw, func.__name__, wait=False) as held:
            if not held:
                log.info("%s still running; this run skipped", func.__name__)
                return None
            return func(gw, now)

    return run


def setpoints_lock(gw: Gateway) -> contextlib.AbstractContextManager[bool]:
    """Held while registers are written from what the setpoint leases say (the control
    cycle's lease, grid-limit and autonomy steps) and while a command writes its registers and
    starts its lease. Without it a cycle that read the leases just before a command's write
    wrote the old value back over the new one, which held until the next cycle. It waits: a
    command is applied at most one cycle's writes later."""
    return _file_lock(gw, "setpoints", wait=True)


# -- the cycles the tasks run ------------------------------------------------------------------


@exclusive
def run_control_cycle(gw: Gateway | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Read the ChargePosts into the outbox, re-assert setpoint leases, and follow the local
    autonomous policy while Enexa is unreachable."""
    from amperio.telemetry import collector  # the Modbus stack loads in the processes that use it

    gw = gw or get_gateway()
    now = now or _now()
    config = gw.config()
    clients = gw.chargeposts(config)
    reading, snapshots = collector.collect(
        gw.settings, gw.state, gw.outbox(), clients, now, counters=gw.metrics()
    )
    result: dict[str, Any] = {"read": reading is not None, "leases": [], "autonomy": None}
    # Setpoints, leases and autonomy act on the site's ChargePosts as one client, with what
    # they just answered; while one does not answer they wait (its setpoints revert on the
    # unit's own reversion timer, as when the only ChargePost is away).
    answered = [snap for snap in snapshots if snap is not None]
    if len(answered) < len(clients):
        return result
    client = site_client(clients)
    snapshot = client.site_snapshot(answered) if isinstance(client, SiteClient) else answered[0]
    with setpoints_lock(gw):
        _setpoint_steps(gw, client, config, snapshot, now, result)
    return result


def _setpoint_steps(
    gw: Gateway,
    client: Any,
    config: dict[str, Any],
    snapshot: dict[str, Any],
    now: datetime,
    result: dict[str, Any],
) -> None:
    """The control cycle's writes: leases re-asserted, the configured grid limit, autonomy."""
    from amperio.dispatch.autonomy_cycle import CAPPED_KEY, ModeTracker

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
        return
    result["grid_limit_written"] = _configured_grid_limit(gw, client, config, snapshot, leases)
    result["autonomy"] = _autonomy(gw, client, config, snapshot, now, mode, capped, leases)


def _reassert_leases(
    gw: Gateway,
    client: Any,
    config: dict[str, Any],
    snapshot: dict[str, Any],
    now: datetime,
    mode: str,
    capped: list[str],
) -> list[dict[str, Any]]:
    from amperio.dispatch.plan import battery_setpoint_registers

    # While Enexa is away autonomy writes the battery and caps chargers (after this step), so
    # leases leave those registers be.
    held = {registers.charger_limit(name) for name in capped}
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
    from amperio.dispatch import autonomy_cycle

    try:
        return autonomy_cycle.run_cycle(
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
    """Write the configured grid limit to the units (each its share on a site of several:
    amperio.chargeposts.SiteClient) when it differs from what they hold and
    no `set_grid_limit` lease holds the register, so a configuration change reaches the
    hardware."""
    limit = configured_grid_limit_kw(config)
    current = snapshot.get(registers.SITE_GRID_LIMIT)
    if limit is None or (current is not None and abs(current - limit) < 0.05):
        return None
    if any(lease["register"] == registers.SITE_GRID_LIMIT for lease in leases):
        return None
    try:
        written = client.write(registers.SITE_GRID_LIMIT, limit)
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
    gw.state.set(StateKey.BUFFER_DEPTH, _depth(gw))
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
def report_status(gw: Gateway | None = None, now: datetime | None = None) -> bool | None:
    """Send the status report when `status.interval_s` has passed (beat ticks more often);
    None when it is not due yet."""
    gw = gw or get_gateway()
    now = now or _now()
    if not status.status_due(gw.state, gw.config(), now):
        return None
    # The depth the last flush recorded: the report needs no handle on the outbox.
    depth = gw.state.get(StateKey.BUFFER_DEPTH)
    return status.report_status(gw.enexa(), gw.settings, gw.state, now, depth)


def watchdog_beat(gw: Gateway | None = None, now: datetime | None = None) -> bool:
    """One heartbeat on each ChargePost the gateway drives."""
    from amperio import watchdog

    gw = gw or get_gateway()
    now = now or _now()
    config = gw.config()
    beats = [watchdog.beat(c, gw.state, config, now) for c in gw.chargeposts(config)]
    record_watchdog_beat(gw.metrics(), all(beats))
    return all(beats)


def apply_command(command_id: str, gw: Gateway | None = None) -> CommandRecord:
    """Run one queued command against this gateway's ChargePosts (the `apply_command` task);
    each write goes to the ChargePost holding the unit it names."""
    gw = gw or get_gateway()
    config = gw.config()
    store = gw.commands()
    with setpoints_lock(gw):
        record = store.execute(command_id, site_client(gw.chargeposts(config)), config)
    log.info("command %s on %s: %s", command_id, gw.settings.site_id, record.status)
    if record.command == "set_mode" and record.status == APPLIED:
        gw.state.set(StateKey.MODE, store.current_mode())
    return record


def publish(task: str, args: list[Any], queue: str) -> None:
    """Send a task to a queue of the shared broker (a message the backend's worker takes)."""
    from amperio.celery import app, filesystem_folder  # the Celery app imports our callers

    # On a shared broker the backend declares amperio.backend and a site's user may only
    # publish to it (amperio/broker_users.py); the embedded broker has no users to mind.
    declare: list[Any] | None = None if filesystem_folder(get_settings()) else []
    app.send_task(task, args=args, queue=queue, declare=declare)


def receive_command(data: dict[str, Any], gw: Gateway | None = None) -> CommandRecord:
    """A command the backend published on this site's queue: into the local command table
    (limits checked again, expired if it arrives late), then run. A redelivery is a replay.
    Its outcome goes back to the backend through the command table's hook."""
    gw = gw or get_gateway()
    store = gw.commands()
    try:
        record, _ = store.submit(data, configsync.operating_limits(gw.config()), _now())
    except LimitsUnknown as exc:
        # Nothing stored on site, so the table has no outcome to tell: say it here.
        gw.backend_relay().add(
            {
                "command_id": data.get("command_id"),
                "status": FAILED,
                "detail": exc.detail,
                "finished_at": format_timestamp(_now()),
            }
        )
        raise
    except CommandError as exc:
        # Refused on arrival: stored as rejected, and the hook has sent the outcome.
        log.warning("command %s refused on the site: %s", data.get("command_id"), exc.detail)
        return store.get(str(data.get("command_id")))
    if record.status != QUEUED:
        return record
    return apply_command(record.command_id, gw)


def report_backend(gw: Gateway | None = None, now: datetime | None = None) -> int:
    """Send the backend this site's limits and health, and any outcome still waiting; the
    number of outcomes sent. Beat runs it every few seconds when AMPERIO_BACKEND_REPORTS=1."""
    gw = gw or get_gateway()
    now = now or _now()
    sent = gw.backend_relay().send()
    full = site_health.gateway_health(gw, now)
    health = {
        "status": full["status"],
        "site": full["sites"][gw.settings.site_id],
        "enexa": full["enexa"],
    }
    limits = configsync.operating_limits(gw.config()) or None
    site_report(publish, gw.settings.site_id, now, limits, health)
    return sent


def recover_commands(gw: Gateway | None = None) -> list[CommandRecord]:
    """Finish or expire this gateway's commands whose task was lost."""
    gw = gw or get_gateway()
    config = gw.config()
    return gw.commands().recover_lost(client=site_client(gw.chargeposts(config)), config=config)


def check_firmware(gw: Gateway | None = None) -> dict[str, Any]:
    """The periodic firmware check, with this gateway's handles."""
    from amperio.enexa_link import firmware

    gw = gw or get_gateway()
    controller = configsync.controller_id(gw.state)
    if not controller:
        return {"outcome": "not_provisioned"}
    try:
        result = firmware.check_and_update(
            gw.enexa(),
            controller,
            status.firmware_version(gw.state),
            gw.state,
            step=events.firmware_steps(gw.outbox, gw.settings.site_id),
        )
    except EnexaError as exc:
        log.warning("firmware check skipped: %s", exc)
        return {"outcome": "unreachable", "detail": str(exc)}
    return {"outcome": result.outcome, "version": result.version, "detail": result.detail}

"""The gateway's Celery app: queues amperio.site.<SITE_ID>(.watchdog), routes, beat.

The broker is `CELERY_BROKER_URL` (RabbitMQ or Redis where many gateways share one), else an
embedded broker with no server: kombu's filesystem transport in the state directory. Results are
not kept: the command table and the gateway state are the record. Start (see docs/gateway.md):

    celery -A amperio.celery worker -Q amperio.site.SITE001 -n site@%h   (threads, 8)
    celery -A amperio.celery worker -Q amperio.site.SITE001.watchdog -P solo -n watchdog@%h
    celery -A amperio.celery beat

Workers run with --without-gossip --without-mingle --without-heartbeat and no remote control:
nothing but the site's own queues and exchanges is declared, so a per-site RabbitMQ user
(amperio/broker_users.py) is enough to run them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from celery import Celery, beat, signals
from kombu.entity import Exchange, Queue

from amperio import broker
from amperio.enexa_link.configsync import load_config
from amperio.settings import Settings, get_settings
from shared.logs import connect_task_signals

log = logging.getLogger(__name__)

WATCHDOG_TASK = "amperio.tasks.watchdog_beat"
FLUSH_INTERVAL_S = 1.0
# Beat asks for a status report this often; the task sends one only when the configured
# `status.interval_s` has passed (or the applied configuration version changed), so a new
# interval holds from the next tick whatever beat's own timers remember.
STATUS_TICK_S = 5.0
RECOVER_INTERVAL_S = 15.0
FIRMWARE_INTERVAL_S = 3600.0
# Latency of the embedded broker: how often a worker looks for new message files.
FILESYSTEM_POLL_S = 0.05


def filesystem_folder(settings: Settings) -> Path | None:
    """The embedded broker's folder, or None when the broker is a server."""
    url = settings.broker_url
    if not url.startswith("filesystem://"):
        return None
    rest = url[len("filesystem://") :]
    rest = rest[len("localhost") :] if rest.startswith("localhost") else rest
    return Path("/" + rest.lstrip("/")) if rest.strip("/") else settings.state_dir / "broker"


def _broker_urls(url: str) -> dict[str, str]:
    # Celery lets CELERY_BROKER_URL in the environment win over broker_url; a process given
    # other Settings (the tests, a bench with several sites) must still use its own broker.
    return {"broker_url": url, "broker_read_url": url, "broker_write_url": url}


def broker_conf(settings: Settings) -> dict[str, Any]:
    folder = filesystem_folder(settings)
    if folder is None and settings.broker_url.startswith(("amqp", "pyamqp")):
        # Publisher confirms: a publish RabbitMQ refuses (no permission, an exchange not
        # declared yet) raises at once, so the outcome relay keeps it and the API marks a
        # command failed, instead of the channel closing later with the message gone.
        return {
            **_broker_urls(settings.broker_url),
            "broker_transport_options": {"confirm_publish": True},
        }
    if folder is None:
        conf: dict[str, Any] = _broker_urls(settings.broker_url)
        if settings.broker_key_prefix and settings.broker_url.startswith(("redis", "rediss")):
            conf["broker_transport_options"] = {"global_keyprefix": settings.broker_key_prefix}
        return conf
    # One folder both in and out: producers (beat, the API) and workers on one machine meet
    # there; each worker only takes the files of the queues it consumes.
    for sub in ("queue", "control", "processed"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return {
        **_broker_urls(f"{broker.SCHEME}://"),
        "broker_transport_options": {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
            "polling_interval": FILESYSTEM_POLL_S,
        },
    }


def beat_schedule(config: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The periodic tasks at the configured intervals; each expires before its next run, so a
    backlog (a worker that was down) never runs stale cycles in a burst."""
    s = config["settings"]

    def every(task: str, interval_s: float, queue: str) -> dict[str, Any]:
        return {
            "task": f"amperio.tasks.{task}",
            "schedule": float(interval_s),
            "options": {"queue": queue, "expires": float(interval_s)},
        }

    site = settings.site_queue
    backend = (
        {"report-backend": every("report_backend", STATUS_TICK_S, site)}
        if settings.backend_reports
        else {}
    )
    return backend | {
        "control-cycle": every("control_cycle", s["telemetry"]["interval_s"], site),
        "flush-outbox": every("flush_outbox", FLUSH_INTERVAL_S, site),
        "sync-config": every("sync_config", s["config_poll_interval_s"], site),
        "report-status": every("report_status", STATUS_TICK_S, site),
        "recover-commands": every("recover_commands", RECOVER_INTERVAL_S, site),
        "check-firmware": every("check_firmware", FIRMWARE_INTERVAL_S, site),
        "watchdog-beat": every(
            "watchdog_beat", s["watchdog"]["interval_s"], settings.watchdog_queue
        ),
    }


class ConfigScheduler(beat.Scheduler):
    """Beat's schedule from the applied configuration, rebuilt when the configuration file
    changes (a new watchdog or telemetry interval applies without restarting beat)."""

    _stamp: float | None = None

    def setup_schedule(self) -> None:
        self._refresh()

    def _refresh(self) -> None:
        settings = get_settings()
        try:
            stamp = settings.config_path.stat().st_mtime
        except FileNotFoundError:
            stamp = 0.0
        if stamp == self._stamp:
            return
        self._stamp = stamp
        schedule = beat_schedule(load_config(settings), settings)
        self.merge_inplace(schedule)
        log.info(
            "Beat schedule from configuration: %s", {k: v["schedule"] for k, v in schedule.items()}
        )

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self._refresh()  # one stat() per tick
        return min(super().tick(*args, **kwargs), 1.0)


def site_queue(name: str) -> Queue:
    """A queue behind a direct exchange of its own name, as Celery makes for a missing queue."""
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def own_exchange_router(settings: Settings) -> Any:
    """Every task goes through its queue's own exchange. Celery would otherwise publish to a
    direct queue through the default exchange, and write access to that (`amq.default` in
    RabbitMQ) reaches every queue of the vhost: a site's broker user gets none."""

    def route(name: str, args: Any, kwargs: Any, options: dict[str, Any], **kw: Any) -> Any:
        queue = options.get("queue") or (
            settings.watchdog_queue if name == WATCHDOG_TASK else settings.site_queue
        )
        qname = getattr(queue, "name", queue)
        return {"queue": qname, "exchange": qname, "routing_key": qname}

    return route


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("amperio")
    app.conf.update(
        **broker_conf(settings),
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=1,
        # Threads: the cycles wait on I/O (Modbus, HTTP), and each kind runs one at a time
        # (gateway.exclusive), so a slow Enexa never takes every slot from the control cycle.
        # The watchdog worker runs with `-P solo` on its own queue.
        worker_pool="threads",
        worker_concurrency=8,
        worker_hijack_root_logger=False,
        task_queues=[site_queue(settings.site_queue), site_queue(settings.watchdog_queue)],
        task_default_queue=settings.site_queue,
        task_default_routing_key=settings.site_queue,
        task_routes=[own_exchange_router(settings)],
        # No broadcast (pidbox) queues: the gateway is run by systemd, not remote-controlled,
        # and neither a per-site broker user nor the file broker allows the fanout exchanges.
        worker_enable_remote_control=False,
        # A cycle that hangs (a dead peer without RST) is killed rather than holding a process.
        task_soft_time_limit=60,
        task_time_limit=90,
        beat_scheduler="amperio.celery:ConfigScheduler",
        beat_max_loop_interval=1.0,
    )
    # The backend's tasks too: its worker runs this app with `-Q amperio.backend`.
    app.conf.imports = ("amperio.tasks", "amperio.backend.tasks")
    return app


app = make_app()
# A command's request id (from Enexa, through the API) rides in the task's message and is on
# every log line of its run; the worker's handlers write JSON with AMPERIO_LOG_FORMAT=json.
connect_task_signals(signals, get_settings().log_format)

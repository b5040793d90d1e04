"""Amperio's command line: provision, simulator, api, worker, watchdog-worker, beat, run,
backend-worker, prune-audit, broker-user."""

from __future__ import annotations

import argparse
import json
import logging
import logging.config
import os
import re
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from amperio.settings import REPO_DIR, Settings, get_settings
from shared.logs import logging_config

log = logging.getLogger("amperio")

CELERY_APP = "amperio.celery:app"
BACKEND_QUEUE = "amperio.backend"  # amperio.backend.reports.BACKEND_QUEUE, without importing Celery
# No gossip, mingle or event heartbeats: they need the broadcast exchanges (celeryev, pidbox)
# that a site's broker user may not declare (docs/security.md, "The broker").
QUIET_WORKER = ("--without-gossip", "--without-mingle", "--without-heartbeat")
DEFAULT_API_BIND = "127.0.0.1:8100"
IDENTIFICATION = ("vendor", "model", "serial", "interface_version", "firmware_version")


# -- provisioning -----------------------------------------------------------------------------


def store_key(path: Path, api_key: str) -> None:
    """Write the API key so only this user can read it, atomically (never half a key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".api_key-")  # created 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(api_key + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def expected_interface_version(register_map: Any) -> str:
    """The interface version the register map is for, from its file name (`<model>-2.6.csv`)."""
    match = re.search(r"-(\d+(?:\.\d+)+)\.csv$", str(register_map.source))
    return match.group(1) if match else "2.6"


def self_test(client: Any) -> tuple[bool, str]:
    """The ChargePost's identification is readable and its interface version matches the map."""
    from amperio.modbus.errors import ModbusError

    try:
        ident = client.read(list(IDENTIFICATION))
    except ModbusError as exc:
        return False, f"ChargePost not readable: {exc}"
    missing = [name for name in IDENTIFICATION if not ident.get(name)]
    if missing:
        return False, f"ChargePost identification unreadable: {', '.join(missing)}"
    expected = expected_interface_version(client.map)
    if str(ident["interface_version"]).strip() != expected:
        return False, (
            f"ChargePost interface version {ident['interface_version']} does not match the "
            f"register map ({expected})"
        )
    return True, (
        f"{ident['vendor']} {ident['model']} serial {ident['serial']}, interface "
        f"{ident['interface_version']}, firmware {ident['firmware_version']}"
    )


def provision(args: argparse.Namespace, settings: Settings) -> int:
    """register -> initial config -> self-tests against the ChargePost -> activate."""
    from amperio import chargeposts
    from amperio.enexa_link import configsync
    from amperio.enexa_link.client import EnexaClient, EnexaError
    from amperio.state import GatewayState, StateKey

    enexa_url = (args.enexa_url or settings.enexa_url).rstrip("/")
    client = EnexaClient(enexa_url, timeout_s=settings.http_timeout_s)
    state = GatewayState(settings.state_path)
    try:
        registered = client.register(args.serial, args.site, args.enrollment_secret)
    except EnexaError as exc:
        print(f"Registration failed: {exc}", file=sys.stderr)
        return 2
    controller_id = registered["controller_id"]
    # Kept at once: the enrollment secret may not allow a second registration.
    store_key(settings.key_file, registered["api_key"])
    state.update({StateKey.CONTROLLER_ID: controller_id, StateKey.SITE_ID: args.site})
    print(f"Registered {args.serial} as {controller_id} at {args.site}.")

    try:
        initial = client.initial_config()
    except EnexaError as exc:
        print(f"Initial configuration failed: {exc}", file=sys.stderr)
        return 2
    passed, reason = True, ""
    config: dict[str, Any] = {}
    try:
        config = configsync.apply_config(
            settings, state, initial.get("config") or {}, datetime.now(UTC)
        )
    except configsync.ConfigInvalid as exc:
        passed, reason = False, f"Initial configuration invalid: {exc}"
    if passed:
        try:
            unit = chargeposts.connect(chargeposts.endpoints(settings, config)[0])
        except (TypeError, ValueError) as exc:
            passed, reason = False, f"ChargePost address unusable: {exc}"
        else:
            try:
                passed, reason = self_test(unit)
            finally:
                unit.close()
    print(("Self-test passed: " if passed else "Self-test FAILED: ") + reason)
    try:
        activated = client.activate(tests_passed=passed, reason=None if passed else reason)
    except EnexaError as exc:
        print(f"Activation failed: {exc}", file=sys.stderr)
        return 2
    state.set(StateKey.ACTIVATED, bool(activated.get("activated")))
    print(
        json.dumps(
            {
                "controller_id": controller_id,
                "activated": bool(activated.get("activated")),
                "tests_passed": passed,
                "key_file": str(settings.key_file),
                "config_version": config.get("version"),
            }
        )
    )
    return 0 if passed and activated.get("activated") else 1


# -- processes --------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_DIR), path) if p)}


def api_command(bind: str, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "amperio.api.wsgi:application",
        "--bind", bind, "--workers", str(workers), "--threads", "4",
        "--graceful-timeout", "5", "--access-logfile", "-", "--no-control-socket",
    ]  # fmt: skip


def worker_command(settings: Settings, pool: str | None, concurrency: int | None) -> list[str]:
    args = [
        sys.executable, "-m", "celery", "-A", CELERY_APP, "worker",
        "-Q", settings.site_queue, "-n", f"site-{settings.site_id}@%h", "--loglevel", "INFO",
        *QUIET_WORKER,
    ]  # fmt: skip
    if pool:
        args += ["--pool", pool]
    if concurrency:
        args += ["--concurrency", str(concurrency)]
    return args


def watchdog_worker_command(settings: Settings) -> list[str]:
    # Its own process on its own queue, one task at a time: a slow Modbus read or a hanging
    # HTTP call in the site worker can never starve the heartbeat.
    return [
        sys.executable, "-m", "celery", "-A", CELERY_APP, "worker",
        "-Q", settings.watchdog_queue, "--pool", "solo", "--concurrency", "1",
        "-n", f"watchdog-{settings.site_id}@%h", "--loglevel", "INFO", *QUIET_WORKER,
    ]  # fmt: skip


def backend_worker_command() -> list[str]:
    # The backend's worker: what every site's gateway reports (outcomes, limits, health). Quiet
    # as the site workers: the backend's broker user may declare no broadcast exchange.
    return [
        sys.executable, "-m", "celery", "-A", CELERY_APP, "worker",
        "-Q", BACKEND_QUEUE, "-n", "backend@%h", "--loglevel", "INFO", *QUIET_WORKER,
    ]  # fmt: skip


def beat_command(settings: Settings) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", CELERY_APP, "beat", "--loglevel", "INFO",
    ]  # fmt: skip


def _exec(args: list[str]) -> int:
    """Become the command, so signals (Ctrl-C, systemd's stop) reach it directly."""
    os.execve(args[0], args, _env())  # noqa: S606 - our own interpreter and modules
    return 0  # not reached


def run_all(args: argparse.Namespace, settings: Settings) -> int:
    """A site gateway: its worker, watchdog worker and beat as children. Ctrl-C, SIGTERM or
    SIGHUP stops them all; so does one of them exiting, named with where its output is.

    No API: a gateway only connects outward (broker, Enexa), and Amperio's API is the fleet's
    backend (`amperio api`), which also keeps the gateway's memory small (docs/gateway.md)."""
    from amperio.procs import (
        Proc,
        ProcessExited,
        check_running,
        ignore_stop_signals,
        stop_all,
        stop_on_signals,
    )

    stop_on_signals()
    commands = {
        "worker": worker_command(settings, args.pool, args.concurrency),
        "watchdog-worker": watchdog_worker_command(settings),
        "beat": beat_command(settings),
    }
    procs: list[Proc] = []
    try:
        for name, command in commands.items():
            procs.append(Proc(name, command, args.log_dir, _env()))
        logs = f"; logs in {args.log_dir}" if args.log_dir else ""
        print(
            f"Amperio gateway for {settings.site_id}: worker, watchdog worker and beat{logs} "
            "(Ctrl-C stops all)",
            flush=True,
        )
        while True:
            check_running(procs)
            time.sleep(0.5)
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP
        return 0
    except ProcessExited as exc:
        print(f"{exc}; stopping the others", file=sys.stderr, flush=True)
        return 1
    finally:
        ignore_stop_signals()
        stop_all(procs)


def prune_audit(args: argparse.Namespace, settings: Settings) -> int:
    """Delete the API's audit rows past the retention (run daily by amperio-audit-prune.timer)."""
    from amperio.api.audit import AuditLog

    days = settings.audit_retention_days if args.days is None else args.days
    if days < 0:
        print("prune-audit: --days must be 0 or more", file=sys.stderr)
        return 2
    print(f"Deleted {AuditLog(settings.audit_path).prune(days)} audit rows older than {days} days.")
    return 0


def broker_user(args: argparse.Namespace) -> int:
    """A site's (or the backend's) RabbitMQ user: printed as rabbitmqctl steps, or applied."""
    from amperio import broker_users

    if bool(args.site) == args.backend:
        print("broker-user: give a SITE or --backend (not both)", file=sys.stderr)
        return 2
    try:
        user = broker_users.backend_user() if args.backend else broker_users.site_user(args.site)
        if args.apply:
            broker_users.apply(user, args.vhost)
    except broker_users.BrokerUserError as exc:
        print(f"broker-user: {exc}", file=sys.stderr)
        return 2
    # stdout only, never the log: the password is shown this once.
    print(f"user {user.name} in vhost {args.vhost}")
    print(f"  configure {user.configure}\n  write     {user.write}\n  read      {user.read}")
    if args.apply:
        print(f"password (shown once): {user.password}")
    else:
        print("run on the broker:\n" + broker_users.script(user, args.vhost))
    print(
        f"CELERY_BROKER_URL=amqps://{user.name}:<password>@<broker>:5671/"
        f"{quote(args.vhost, safe='')}"
    )
    return 0


# -- the command line -------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="amperio", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("provision", help="register, configure, self-test and activate")
    p.add_argument("--serial", required=True)
    p.add_argument("--site", required=True)
    p.add_argument("--enrollment-secret", required=True)
    p.add_argument("--enexa-url", help="default: AMPERIO_ENEXA_URL")

    sub.add_parser("simulator", help="run ChargePost simulators (see its --help)", add_help=False)

    p = sub.add_parser("api", help="serve /v1/dispatch and /v1/health with gunicorn")
    p.add_argument("--bind", default=os.environ.get("AMPERIO_API_BIND", DEFAULT_API_BIND))
    p.add_argument("--workers", type=int, default=2)

    p = sub.add_parser("worker", help="Celery worker for this site's queue")
    p.add_argument("--pool", help="Celery pool (prefork, solo, threads)")
    p.add_argument("--concurrency", type=int)

    sub.add_parser("watchdog-worker", help="Celery worker for the heartbeat queue alone")
    sub.add_parser("beat", help="the periodic schedule")
    sub.add_parser("backend-worker", help="Celery worker for what the gateways report")

    p = sub.add_parser("run", help="a site gateway: worker, watchdog worker and beat together")
    p.add_argument("--pool", help="Celery pool of the site worker")
    p.add_argument("--concurrency", type=int)
    p.add_argument("--log-dir", type=Path, help="one log file per process (default: terminal)")

    p = sub.add_parser("prune-audit", help="delete the API's audit rows past the retention")
    p.add_argument("--days", type=int, help="default: AMPERIO_AUDIT_RETENTION_DAYS")

    p = sub.add_parser("broker-user", help="a site's RabbitMQ user, limited to its own queues")
    p.add_argument("site", nargs="?", help="the site id, e.g. SITE001")
    p.add_argument(
        "--backend", action="store_true", help="the user that queues every site's commands"
    )
    p.add_argument("--vhost", default="/")
    p.add_argument("--apply", action="store_true", help="run rabbitmqctl here (as root)")
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulator"]:
        from amperio.simulator.__main__ import main as simulator_main

        return simulator_main(argv[1:])
    args, extra = parse_args(argv)
    if extra:
        print(f"amperio {args.command}: unrecognized arguments: {' '.join(extra)}", file=sys.stderr)
        return 2
    settings = get_settings()
    logging.config.dictConfig(logging_config(settings.log_format, settings.log_level))
    if args.command == "provision":
        return provision(args, settings)
    if args.command == "api":
        return _exec(api_command(args.bind, args.workers))
    if args.command == "worker":
        return _exec(worker_command(settings, args.pool, args.concurrency))
    if args.command == "watchdog-worker":
        return _exec(watchdog_worker_command(settings))
    if args.command == "beat":
        return _exec(beat_command(settings))
    if args.command == "backend-worker":
        return _exec(backend_worker_command())
    if args.command == "run":
        return run_all(args, settings)
    if args.command == "prune-audit":
        return prune_audit(args, settings)
    if args.command == "broker-user":
        return broker_user(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())

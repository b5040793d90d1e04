"""The gateway's Celery tasks: thin, one call each into amperio.gateway (which holds the
process's handles and calls the packages that do the work)."""

from __future__ import annotations

from typing import Any

from amperio import gateway
from amperio.celery import app


@app.task(name="amperio.tasks.control_cycle", ignore_result=True)
def control_cycle() -> dict[str, Any]:
    """Read the ChargePosts into the outbox, re-assert leases (one task per cycle, all units)."""
    return gateway.run_control_cycle()


@app.task(name="amperio.tasks.flush_outbox", ignore_result=True)
def flush_outbox() -> dict[str, int]:
    return gateway.flush_outbox()


@app.task(name="amperio.tasks.sync_config", ignore_result=True)
def sync_config() -> str:
    return gateway.sync_config()


@app.task(name="amperio.tasks.report_status", ignore_result=True)
def report_status() -> bool | None:
    """Beat ticks often; the report goes out only at the configured `status.interval_s`."""
    return gateway.report_status()


@app.task(name="amperio.tasks.watchdog_beat", ignore_result=True)
def watchdog_beat() -> bool:
    return gateway.watchdog_beat()


# Late ack: re-running is safe, the command table claims each command once.
@app.task(name="amperio.tasks.apply_command", ignore_result=True, acks_late=True)
def apply_command(command_id: str) -> dict[str, Any]:
    return gateway.apply_command(command_id).to_dict()


# Late ack: a redelivery is a replay in the command table, which claims each command once.
@app.task(name="amperio.tasks.receive_command", ignore_result=True, acks_late=True)
def receive_command(command: dict[str, Any]) -> dict[str, Any]:
    """A command the backend published on this site's queue."""
    return gateway.receive_command(command).to_dict()


@app.task(name="amperio.tasks.report_backend", ignore_result=True)
def report_backend() -> int:
    """Limits, health and waiting outcomes to the backend (AMPERIO_BACKEND_REPORTS=1)."""
    return gateway.report_backend()


@app.task(name="amperio.tasks.recover_commands", ignore_result=True)
def recover_commands() -> int:
    """Finish or expire commands whose task was lost (the table, not the broker, is the truth)."""
    return len(gateway.recover_commands())


@app.task(name="amperio.tasks.check_firmware", ignore_result=True)
def check_firmware() -> Any:
    return gateway.check_firmware()

"""Both sides running for real: a live Enexa (gunicorn), the ChargePost simulator, and a
provisioned Amperio gateway (site worker, watchdog worker, beat and API) on Redis when
CELERY_BROKER_URL names it, else on the embedded broker. Each link (gateway to Enexa, Enexa to
the Amperio API, gateway to the ChargePost) runs through a TCP relay a test can cut. Every
process binds 127.0.0.1 and is stopped in `stop()`."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import requests

from amperio.modbus.client import ChargePostClient
from amperio.procs import REPO_DIR as REPO
from amperio.procs import Proc, free_port, stop_all, wait_until
from amperio.simulator import ChargePostSimulator
from demo.enexa import LiveEnexa, enexa_database, run_manage
from tests.integration.tcpproxy import TcpProxy

SITE = "SITE001"
SERIAL = "CP-DEMO-0001"
GATEWAY_PROCESSES = ("worker", "watchdog-worker", "beat", "api")

# Short intervals so that each behaviour shows within seconds.
FAST = {
    "telemetry": {"interval_s": 1},
    "watchdog": {"interval_s": 2, "timeout_s": 6},
    "status": {"interval_s": 5},
    "config_poll_interval_s": 5,
}


def set_site_config(system: System, changes: dict) -> None:
    current = system.enexa_api("GET", f"/v1/config/{SITE}")
    assert current.status_code == 200, current.text
    response = system.enexa_api(
        "PATCH", f"/v1/config/{SITE}", json=changes, headers={"If-Match": current.headers["ETag"]}
    )
    assert response.status_code == 200, response.text


def delete_broker_keys(url: str, prefix: str) -> None:
    """This system's keys on a shared Redis broker (under its own prefix), and no other's."""
    if not url.startswith("redis"):
        return
    import redis

    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


def wait_for_amperio(url: str) -> None:
    """Once Amperio's API answers its health (200, or 503 while a gateway is degraded)."""
    wait_until(
        lambda: requests.get(f"{url}/v1/health", timeout=2).status_code in (200, 503),
        30,
        what=f"Amperio API at {url}",
    )


def enexa_request(url: str, token: str, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    return requests.request(method, f"{url}{path}", headers=headers, timeout=15, **kwargs)


def provision_gateway(
    enexa_api: Callable[..., requests.Response], env: dict[str, str], site: str, serial: str
) -> str:
    """`amperio provision` of a gateway with `env`, on a new enrollment secret of `site`."""
    response = enexa_api("POST", f"/v1/sites/{site}/enrollment-tokens", json={})
    assert response.status_code == 201, response.text
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "amperio",
            "provision",
            "--serial",
            serial,
            "--site",
            site,
            "--enrollment-secret",
            response.json()["secret"],
        ],  # fmt: skip
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


class System:
    """Start with `start()`; `stop()` in `finally` (or use it as a context manager)."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        enexa_env: dict[str, str] | None = None,
        amperio_env: dict[str, str] | None = None,
        speed: float = 1.0,
    ):
        self.tmp_path = tmp_path
        self.log_dir = tmp_path / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.service_token = uuid.uuid4().hex
        self.amperio_port = free_port()
        self.amperio_url = f"http://127.0.0.1:{self.amperio_port}"
        self._enexa_env = {"ENEXA_AMPERIO_TOKEN": self.service_token, **(enexa_env or {})}
        self._amperio_extra = amperio_env or {}
        self.speed = speed
        self._stack = ExitStack()
        self.procs: dict[str, Proc] = {}
        self.enexa: LiveEnexa | None = None
        self.token = ""
        # Called once Enexa is up and before the gateway is provisioned (e.g. to set config).
        self.before_provisioning: Callable[[], None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> System:
        try:
            self.amperio_link = self._relay(self.amperio_port)
            database_url = self._stack.enter_context(enexa_database(self.tmp_path))
            self.enexa = LiveEnexa(
                database_url,
                self.log_dir,
                {
                    "ENEXA_AMPERIO_URL": f"http://127.0.0.1:{self.amperio_link.port}",
                    **self._enexa_env,
                },
            )
            self._stack.callback(self.enexa.stop)
            self.enexa_link = self._relay(self.enexa.port)
            self.token = self.enexa.staff_token()
            self.simulator = ChargePostSimulator(port=0, speed=self.speed, seed=7).start()
            self._stack.callback(self.simulator.stop)
            self.modbus_link = self._relay(self.simulator.port)
            broker = os.environ.get("CELERY_BROKER_URL", "")
            if not broker.startswith("redis"):
                broker = f"filesystem://localhost/{self.tmp_path / 'amperio' / 'broker'}"
            # Systems in parallel test runs share the Redis database: each has its own keys.
            self.broker_key_prefix = f"it-{uuid.uuid4().hex[:12]}:"
            self._stack.callback(delete_broker_keys, broker, self.broker_key_prefix)
            self.amperio_env = {
                "AMPERIO_SITE_ID": SITE,
                "AMPERIO_ENEXA_URL": f"http://127.0.0.1:{self.enexa_link.port}",
                "AMPERIO_STATE_DIR": str(self.tmp_path / "amperio"),
                "AMPERIO_SERVICE_TOKENS": self.service_token,
                "AMPERIO_API_BIND": f"127.0.0.1:{self.amperio_port}",
                "AMPERIO_MODBUS_PORT": str(self.modbus_link.port),
                "CELERY_BROKER_URL": broker,
                "AMPERIO_BROKER_KEY_PREFIX": self.broker_key_prefix,
                # The backlog still waits after each restore, but seconds, not up to ten.
                "AMPERIO_BACKLOG_DELAY_S": "0.5,2",
                **self._amperio_extra,
            }
            if self.before_provisioning:
                self.before_provisioning()
            self.provision()
            for name in GATEWAY_PROCESSES:
                self.start_gateway_process(name)
            wait_for_amperio(self.amperio_url)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_all(list(self.procs.values()))
        self._stack.close()

    def _relay(self, port: int) -> TcpProxy:
        relay = TcpProxy(port)
        self._stack.callback(relay.stop)
        return relay

    def __enter__(self) -> System:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start_gateway_process(self, name: str) -> Proc:
        proc = Proc(
            f"amperio-{name}",
            [sys.executable, "-m", "amperio", name],
            self.log_dir,
            self.amperio_env,
        )
        self.procs[name] = proc
        return proc

    def restart_gateway_process(self, name: str) -> Proc:
        self.procs[name].stop()
        return self.start_gateway_process(name)

    def provision(self) -> str:
        return provision_gateway(self.enexa_api, self.amperio_env, SITE, SERIAL)

    # -- looking at it ---------------------------------------------------------------------

    def enexa_api(self, method: str, path: str, **kwargs) -> requests.Response:
        assert self.enexa is not None
        return enexa_request(self.enexa.url, self.token, method, path, **kwargs)

    def amperio_health(self) -> dict:
        return requests.get(f"{self.amperio_url}/v1/health", timeout=5).json()

    def modbus(self) -> ChargePostClient:
        """A client straight to the simulator (not through the relay the gateway uses)."""
        return ChargePostClient("127.0.0.1", self.simulator.port, timeout_s=2.0)

    def stored_readings(self) -> list[dict]:
        points: list[dict] = []
        params = {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}
        while True:
            body = self.enexa_api("GET", f"/v1/sites/{SITE}/telemetry", params=params).json()
            points += body["points"]
            if not body.get("next_from"):
                return points
            params["from"] = body["next_from"]

    def latest_reading(self) -> dict | None:
        return self.enexa_api("GET", f"/v1/sites/{SITE}/telemetry/latest").json()["reading"]

    def dispatch(self, command: str, params: dict, **extra) -> dict:
        response = self.enexa_api(
            "POST",
            f"/v1/sites/{SITE}/commands",
            json={"command": command, "params": params, **extra},
        )
        assert response.status_code in (200, 202), response.text
        return response.json()

    def command_status(self, command_id: str) -> dict:
        return self.enexa_api("GET", f"/v1/commands/{command_id}").json()

    def wait_for_command(
        self, command_id: str, *statuses: str, timeout_s: float = 30, interval_s: float = 0.3
    ) -> dict:
        """The command's status once it is one of `statuses`; TimeoutError after `timeout_s`."""

        def reached() -> dict | None:
            status = self.command_status(command_id)
            return status if status["status"] in statuses else None

        what = f"command {command_id} {' or '.join(statuses)}"
        result: dict = wait_until(reached, timeout_s, interval_s, what=what)
        return result

    def in_safe_state(self) -> bool:
        values = self.simulator_values()
        return bool(int(values["alarm_bits"] or 0) & 1)

    def leave_safe_state(self) -> None:
        """The unit back under the gateway's control: a fresh heartbeat and a new setpoint bring
        it out of its safe state (a test's doing, or a control cycle late on a loaded machine)."""
        if self.in_safe_state():
            self.dispatch("set_battery_power", {"power_kw": 0})
        wait_until(lambda: not self.in_safe_state(), 60, 0.2, what="the unit back from safe")

    def simulator_values(self) -> dict:
        return self.simulator.state.values()

    def gateway(self):
        """This test process's own handles on the gateway (the same state files the gateway's
        processes use), e.g. to look into the outbox or drain it while beat is stopped."""
        from amperio.gateway import Gateway
        from amperio.settings import load

        saved = dict(os.environ)
        os.environ.update(self.amperio_env)
        try:
            return Gateway(load())
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def outbox_depth(self) -> dict:
        return self.gateway().outbox().depth()

    def run_manage(self, *args: str) -> str:
        assert self.enexa is not None
        return run_manage(*args, env=self.enexa.env)

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.log()[-4000:]}" for p in self.procs.values())


__all__ = ["FAST", "SITE", "System", "set_site_config", "wait_until"]

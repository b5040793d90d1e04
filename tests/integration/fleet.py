"""A fleet running for real: one Enexa (gunicorn and its worker), one Amperio backend (API and
backend worker on a shared store), one RabbitMQ vhost with a user per site and one for the
backend, and per site a ChargePost simulator and a provisioned gateway (site worker, watchdog
worker, beat) that connects outward only, to the broker and to Enexa. Every process binds
127.0.0.1; `stop()` in `finally` stops them and removes the vhost and its users."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import requests

from amperio import broker_users
from amperio.procs import Proc, free_port, stop_all, wait_until
from amperio.simulator import ChargePostSimulator
from demo.enexa import LiveEnexa, enexa_database, run_manage
from tests.integration.system import (
    FAST,
    enexa_request,
    provision_gateway,
    wait_for_amperio,
)

BROKER = "127.0.0.1:5672"
SITES = ("SITE001", "SITE002", "SITE003")
GATEWAY_PROCESSES = ("worker", "watchdog-worker", "beat")
# A gateway silent this long makes its site degraded in the backend's health.
SILENT_AFTER_S = 6


def rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - rabbitmqctl with our own arguments
        [broker_users.RABBITMQCTL, *args], capture_output=True, text=True, timeout=60
    )


class Gateway:
    """One site's gateway processes, on that site's broker user."""

    def __init__(self, site_id: str, env: dict[str, str], log_dir: Path):
        self.site_id = site_id
        self.env = env
        self.log_dir = log_dir
        self.procs: dict[str, Proc] = {}

    def start(self) -> None:
        for name in GATEWAY_PROCESSES:
            self.procs[name] = Proc(
                f"{self.site_id}-{name}",
                [sys.executable, "-m", "amperio", name],
                self.log_dir,
                self.env,
            )

    def stop(self) -> None:
        stop_all(list(self.procs.values()))

    def kill(self) -> None:
        """Power cut: every process of the gateway killed at once, nothing wound down."""
        for proc in self.procs.values():
            proc.signal(signal.SIGKILL)
        for proc in self.procs.values():
            proc.stop(timeout_s=0)

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.log()[-3000:]}" for p in self.procs.values())


class Fleet:
    """Start with `start()`; `stop()` in `finally` (or use it as a context manager)."""

    def __init__(self, tmp_path: Path, sites: tuple[str, ...] = SITES):
        self.tmp_path = tmp_path
        self.sites = sites
        self.log_dir = tmp_path / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.service_token = secrets.token_hex(16)
        self.vhost = f"fleet-it-{secrets.token_hex(4)}"
        self._stack = ExitStack()
        self.simulators: dict[str, ChargePostSimulator] = {}
        self.gateways: dict[str, Gateway] = {}
        self.backend_procs: list[Proc] = []
        self.enexa: LiveEnexa | None = None
        self.token = ""

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Fleet:
        pool = ThreadPoolExecutor(len(self.sites))
        try:
            # The broker's users (rabbitmqctl, a second or so each) while Enexa starts.
            broker = pool.submit(self._broker)
            self.backend_port = free_port()
            self.backend_url = f"http://127.0.0.1:{self.backend_port}"
            database_url = self._stack.enter_context(enexa_database(self.tmp_path))
            self.enexa = LiveEnexa(
                database_url,
                self.log_dir,
                {
                    "ENEXA_AMPERIO_URL": self.backend_url,
                    "ENEXA_AMPERIO_TOKEN": self.service_token,
                },
            )
            self._stack.callback(self.enexa.stop)
            self.token = self.enexa.staff_token()
            for site in self.sites:
                self.add_site(site)
            urls = broker.result()
            self._start_backend(urls["backend"])
            for n, site in enumerate(self.sites):
                self.simulators[site] = ChargePostSimulator(port=0, seed=n + 1).start()
                self._stack.callback(self.simulators[site].stop)
                self.gateways[site] = Gateway(
                    site, self._gateway_env(site, urls[site]), self.log_dir
                )
            # Provisioning is a few seconds of start-up per gateway: all at once.
            list(pool.map(self.provision, self.sites))
            for gateway in self.gateways.values():
                gateway.start()
            wait_for_amperio(self.backend_url)
        except BaseException:
            self.stop()
            raise
        finally:
            pool.shutdown()
        return self

    def stop(self) -> None:
        """Every process at once (each winding down while the others do), then the rest."""
        procs = [p for g in self.gateways.values() for p in g.procs.values()]
        procs += self.backend_procs
        if self.enexa is not None:
            procs += [p for p in (self.enexa.proc, self.enexa.worker) if p]
        stop_all(procs)
        self._stack.close()

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _broker(self) -> dict[str, str]:
        """A vhost of this run with a user per site and one for the backend (users are global
        to the broker: their names carry the vhost's, so parallel runs never meet)."""
        added = rabbitmqctl("add_vhost", self.vhost)
        if added.returncode != 0:
            raise RuntimeError(f"RabbitMQ needed at {BROKER}: {added.stderr.strip()}")
        users = {site: broker_users.site_user(site) for site in self.sites}
        users["backend"] = broker_users.backend_user()
        users = {key: replace(u, name=f"{self.vhost}-{u.name}") for key, u in users.items()}

        def remove() -> None:
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(broker_users.delete, [u.name for u in users.values()]))
            rabbitmqctl("delete_vhost", self.vhost)

        self._stack.callback(remove)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda u: broker_users.apply(u, self.vhost), users.values()))
        return {
            key: f"amqp://{user.name}:{user.password}@{BROKER}/{self.vhost}"
            for key, user in users.items()
        }

    def _start_backend(self, broker_url: str) -> None:
        env = {
            "AMPERIO_DATABASE_URL": f"sqlite:///{self.tmp_path / 'backend.sqlite3'}",
            "AMPERIO_SITES": ",".join(self.sites),
            "AMPERIO_SERVICE_TOKENS": self.service_token,
            "AMPERIO_STATE_DIR": str(self.tmp_path / "backend"),
            "AMPERIO_SILENT_AFTER_S": str(SILENT_AFTER_S),
            "CELERY_BROKER_URL": broker_url,
        }
        python = sys.executable
        bind = f"127.0.0.1:{self.backend_port}"
        self.backend_procs = [
            Proc("backend-worker", [python, "-m", "amperio", "backend-worker"], self.log_dir, env),
            Proc(
                "backend-api", [python, "-m", "amperio", "api", "--bind", bind], self.log_dir, env
            ),
        ]

    def _gateway_env(self, site: str, broker_url: str) -> dict[str, str]:
        assert self.enexa is not None
        return {
            "AMPERIO_SITE_ID": site,
            "AMPERIO_ENEXA_URL": self.enexa.url,
            "AMPERIO_STATE_DIR": str(self.tmp_path / site),
            "AMPERIO_MODBUS_PORT": str(self.simulators[site].port),
            "AMPERIO_BACKEND_REPORTS": "1",
            "AMPERIO_BACKLOG_DELAY_S": "0.5,2",
            "CELERY_BROKER_URL": broker_url,
        }

    def add_site(self, site: str) -> None:
        """The demo data holds SITE001 with its equipment; the others get a grid connection."""
        if self.enexa_api("GET", f"/v1/sites/{site}").status_code == 200:
            return
        body = {"id": site, "name": site, "timezone": "UTC", "grid_connection_limit_kw": 400}
        added = self.enexa_api("POST", "/v1/sites", json=body)
        assert added.status_code == 201, added.text

    def provision(self, site: str) -> None:
        current = self.enexa_api("GET", f"/v1/config/{site}")
        assert current.status_code == 200, current.text
        changed = self.enexa_api(
            "PATCH", f"/v1/config/{site}", json=FAST, headers={"If-Match": current.headers["ETag"]}
        )
        assert changed.status_code == 200, changed.text
        provision_gateway(self.enexa_api, self.gateways[site].env, site, f"CP-FLEET-{site}")

    # -- looking at it ---------------------------------------------------------------------

    def enexa_api(self, method: str, path: str, **kwargs) -> requests.Response:
        assert self.enexa is not None
        return enexa_request(self.enexa.url, self.token, method, path, **kwargs)

    def latest_reading(self, site: str) -> dict | None:
        return self.enexa_api("GET", f"/v1/sites/{site}/telemetry/latest").json()["reading"]

    def backend_health(self) -> dict:
        return requests.get(f"{self.backend_url}/v1/health", timeout=5).json()

    def dispatch(self, site: str, command: str, params: dict) -> str:
        response = self.enexa_api(
            "POST", f"/v1/sites/{site}/commands", json={"command": command, "params": params}
        )
        assert response.status_code in (200, 202), response.text
        return str(response.json()["command_id"])

    def command(self, command_id: str) -> dict:
        return self.enexa_api("GET", f"/v1/commands/{command_id}").json()

    def wait_for_command(self, command_id: str, *statuses: str, timeout_s: float = 30) -> dict:
        def reached() -> dict | None:
            found = self.command(command_id)
            return found if found["status"] in statuses else None

        result: dict = wait_until(reached, timeout_s, 0.3, what=f"{command_id} {statuses}")
        return result

    def run_manage(self, *args: str) -> str:
        assert self.enexa is not None
        return run_manage(*args, env=self.enexa.env)

    def logs(self) -> str:
        backend = "\n".join(f"== {p.name}\n{p.log()[-3000:]}" for p in self.backend_procs)
        return backend + "\n" + "\n".join(g.logs() for g in self.gateways.values())

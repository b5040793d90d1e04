"""`make demo`: the whole system on one machine, no server to install.

Enexa on SQLite (gunicorn, and its Celery worker and beat on Enexa's embedded broker), the
ChargePost simulator, and Amperio (its API, and the gateway's worker, watchdog worker and beat)
on its own embedded broker. It provisions the demo controller through the real
enrollment flow, shows telemetry arriving in Enexa and a dispatched `set_battery_power`
changing the simulator's battery power, then keeps reporting until Ctrl-C, SIGTERM or SIGHUP
stops it all, or one part exits (named, with its log) and the rest are stopped."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from amperio.procs import (
    REPO_DIR,
    Proc,
    ProcessExited,
    check_running,
    free_port,
    ignore_stop_signals,
    port_available,
    stop_all,
    stop_on_signals,
    wait_until,
)
from demo.enexa import enexa_worker_args

SITE = "SITE001"
SERIAL = "CP-DEMO-0001"
CONTROLLER = "CTRL001"


REPORT_INTERVAL_S = 10


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def pick_port(variable: str, default: int, what: str) -> int:
    """The port from the environment, else `default` whenever a server can have it (also right
    after the last demo stopped, its connections still in TIME_WAIT), else a free port, said
    in one line."""
    if variable in os.environ:
        return int(os.environ[variable])
    if port_available(default):
        return default
    port = free_port()
    say(f"port {default} is taken: {what} uses port {port} instead (set {variable} to choose)")
    return port


class Demo:
    """Starts each part, walks the provisioning flow and shows the system working."""

    def __init__(self, work_dir: Path):
        self.work_dir = work_dir
        self.log_dir = work_dir / "logs"
        self.procs: list[Proc] = []
        self.enexa_port = pick_port("ENEXA_DEMO_PORT", 8000, "Enexa")
        self.amperio_port = pick_port("AMPERIO_DEMO_API_PORT", 8100, "Amperio's API")
        self.enexa_url = f"http://127.0.0.1:{self.enexa_port}"
        self.admin_password = secrets.token_urlsafe(12)
        self.operator_password = secrets.token_urlsafe(12)
        service_token = secrets.token_urlsafe(24)
        self.enexa_env = {
            "DJANGO_SETTINGS_MODULE": "enexa.settings.dev",
            "DATABASE_URL": f"sqlite:///{work_dir / 'enexa.sqlite3'}",
            "ENEXA_VAR_DIR": str(work_dir / "enexa"),
            "ENEXA_DEMO_ADMIN_PASSWORD": self.admin_password,
            "ENEXA_DEMO_OPERATOR_PASSWORD": self.operator_password,
            "ENEXA_AMPERIO_URL": f"http://127.0.0.1:{self.amperio_port}",
            "ENEXA_AMPERIO_TOKEN": service_token,
        }
        self.amperio_env = {
            "AMPERIO_SITE_ID": SITE,
            "AMPERIO_ENEXA_URL": self.enexa_url,
            "AMPERIO_STATE_DIR": str(work_dir / "amperio"),
            "AMPERIO_SERVICE_TOKENS": service_token,
            "AMPERIO_API_BIND": f"127.0.0.1:{self.amperio_port}",
        }
        self.token = ""

    def start(self, name: str, args: list[str], env: dict[str, str], **kwargs: Any) -> Proc:
        proc = Proc(name, [sys.executable, *args], self.log_dir, env, **kwargs)
        self.procs.append(proc)
        return proc

    def wait(
        self,
        predicate: Callable[[], Any],
        timeout_s: float,
        interval_s: float = 0.1,
        what: str = "condition",
    ) -> Any:
        """wait_until, cut short (ProcessExited) when one of the demo's processes exits."""

        def running_and() -> Any:
            check_running(self.procs)
            return predicate()

        return wait_until(running_and, timeout_s, interval_s, what)

    def run_step(self, args: list[str], env: dict[str, str]) -> str:
        result = subprocess.run(  # noqa: S603 - our own interpreter and modules
            [sys.executable, *args],
            cwd=REPO_DIR,
            env={**os.environ, "PYTHONPATH": str(REPO_DIR), **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return requests.request(
            method, f"{self.enexa_url}{path}", headers=headers, timeout=10, **kwargs
        )

    def start_enexa(self) -> None:
        say(
            "Enexa: migrating a fresh SQLite database, loading the demo data, collecting the "
            "static files (admin, API docs)"
        )
        self.run_step(["manage.py", "migrate", "--noinput"], self.enexa_env)
        self.run_step(["manage.py", "seed_demo"], self.enexa_env)
        # gunicorn serves them through WhiteNoise from STATIC_ROOT (nginx in production).
        self.run_step(["manage.py", "collectstatic", "--noinput"], self.enexa_env)
        self.start(
            "enexa",
            [
                "-m",
                "gunicorn",
                "enexa.wsgi",
                "-b",
                f"127.0.0.1:{self.enexa_port}",
                "-w",
                "2",
                "--threads",
                "4",
                "--graceful-timeout",
                "2",
            ],
            self.enexa_env,
        )
        self.wait(lambda: self.api("GET", "/v1/health").ok, 30, what="Enexa health")
        # Deliveries to Amperio, outage recovery, and beat's offline detection, reconciliation,
        # redelivery and status pull, on the embedded broker in ENEXA_VAR_DIR.
        self.start("enexa-worker", enexa_worker_args(), self.enexa_env)
        self.start("enexa-beat", ["-m", "celery", "-A", "enexa.celery", "beat"], self.enexa_env)
        response = self.api(
            "POST", "/v1/auth/token", json={"username": "admin", "password": self.admin_password}
        )
        response.raise_for_status()
        self.token = response.json()["access"]

    def start_simulator(self) -> int:
        port_file = self.work_dir / "simulator.port"
        self.start(
            "simulator",
            [
                "-m",
                "amperio.simulator",
                "--port",
                "0",
                "--port-file",
                str(port_file),
                "--speed",
                "1",
            ],
            {},
        )
        port = int(self.wait(lambda: port_file.read_text().strip(), 20, what="simulator port"))
        self.amperio_env["AMPERIO_MODBUS_PORT"] = str(port)
        return port

    def provision(self) -> None:
        response = self.api("POST", f"/v1/sites/{SITE}/enrollment-tokens", json={"uses": 1})
        response.raise_for_status()
        secret = response.json()["secret"]
        say(
            f"Amperio: provisioning {SERIAL} at {SITE} (register, initial config, self-tests, "
            "activate)"
        )
        out = self.run_step(
            [
                "-m",
                "amperio",
                "provision",
                "--serial",
                SERIAL,
                "--site",
                SITE,
                "--enrollment-secret",
                secret,
            ],
            self.amperio_env,
        )
        say(out.strip().splitlines()[-1] if out.strip() else "provisioned")

    def start_amperio(self) -> None:
        env = dict(self.amperio_env)
        # Amperio's API (in production the fleet's backend in the cloud; here it serves the
        # one site from the gateway's state directory) and the gateway itself.
        self.start("amperio-api", ["-m", "amperio", "api"], env)
        # Long enough for `amperio run` to stop its own three processes: killed sooner, it
        # would leave them running.
        self.start(
            "amperio",
            ["-m", "amperio", "run", "--log-dir", str(self.log_dir)],
            env,
            stop_timeout_s=60,
        )
        self.wait(
            lambda: (
                requests.get(
                    f"http://{self.amperio_env['AMPERIO_API_BIND']}/v1/health", timeout=2
                ).ok
            ),
            60,
            0.3,
            what="Amperio's API",
        )

    def show_telemetry(self) -> None:
        def latest() -> dict[str, Any] | None:
            response = self.api("GET", f"/v1/sites/{SITE}/telemetry/latest")
            return response.json()["reading"] if response.ok else None

        reading = self.wait(latest, 60, 0.5, what="telemetry in Enexa")
        say(f"telemetry arriving in Enexa: {_summary(reading)}")

    def show_dashboard(self) -> None:
        """Log in to the dashboard as the operator, as a browser would (CSRF cookie and field),
        and say what the site's page shows."""
        browser = requests.Session()
        login = f"{self.enexa_url}/app/login/"
        browser.get(login, timeout=10).raise_for_status()
        response = browser.post(
            login,
            data={
                "username": "operator",
                "password": self.operator_password,
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
            timeout=10,
        )
        response.raise_for_status()
        page = browser.get(f"{self.enexa_url}/app/sites/{SITE}/", timeout=10).text
        # Its scripts come from this server (WhiteNoise), never from the internet.
        for asset in ("vendor/htmx/htmx.min.js", "vendor/uplot/uPlot.iife.min.js"):
            browser.get(f"{self.enexa_url}/static/dashboard/{asset}", timeout=10).raise_for_status()
        found = re.search(r'id="soc-value" data-soc="([0-9.]+)"', page)
        if found is None:
            raise RuntimeError("the dashboard's site page shows no SOC")
        say(
            f"Dashboard: {self.enexa_url}/app/ (operator login: user operator, password "
            f"{self.operator_password}, this run only; admin sees every site); {SITE} shows "
            f"SOC {float(found.group(1)):.1f} %"
        )

    def show_dispatch(self) -> None:
        from amperio.modbus.client import ChargePostClient

        say("dispatching set_battery_power -50 kW (charge) from Enexa")
        response = self.api(
            "POST",
            f"/v1/sites/{SITE}/commands",
            json={"command": "set_battery_power", "params": {"power_kw": -50}},
        )
        response.raise_for_status()
        command_id = response.json()["command_id"]

        def applied() -> dict[str, Any] | None:
            body = self.api("GET", f"/v1/commands/{command_id}").json()
            return body if body.get("status") in {"applied", "rejected", "failed"} else None

        result = self.wait(applied, 30, 0.3, what="command applied")
        say(f"command {command_id}: {result['status']} {result.get('detail', '')}".rstrip())
        client = ChargePostClient("127.0.0.1", int(self.amperio_env["AMPERIO_MODBUS_PORT"]))

        def charging_at_50_kw() -> dict[str, Any] | None:
            v = client.read(["bat1_power_kw", "bat2_power_kw"])
            total = float(v["bat1_power_kw"] or 0) + float(v["bat2_power_kw"] or 0)
            return v if abs(total + 50) < 1 else None

        try:
            values = self.wait(
                charging_at_50_kw,
                30,
                0.5,
                what="simulator battery power",
            )
        finally:
            client.close()
        say(
            f"simulator battery power now: BAT1 {values['bat1_power_kw']:.1f} kW, "
            f"BAT2 {values['bat2_power_kw']:.1f} kW (negative = charging)"
        )

    def report_forever(self) -> None:
        say("running; Ctrl-C stops everything")
        next_report = time.monotonic() + REPORT_INTERVAL_S
        while True:
            check_running(self.procs)  # one part gone: stop the rest at once
            if time.monotonic() >= next_report:
                next_report += REPORT_INTERVAL_S
                response = self.api("GET", f"/v1/sites/{SITE}/telemetry/latest")
                if response.ok and response.json()["reading"]:
                    say(f"latest: {_summary(response.json()['reading'])}")
            time.sleep(0.5)


def _summary(reading: dict[str, Any]) -> str:
    battery = reading.get("battery") or {}
    grid = reading.get("grid") or {}
    chargers = reading.get("chargers") or []
    charger = chargers[0] if chargers else {}
    return (
        f"{reading.get('timestamp')} SOC {battery.get('soc_pct')} % battery "
        f"{battery.get('power_kw')} kW, grid import {grid.get('import_kw')} kW, "
        f"{charger.get('id', 'CHG1')}: {charger.get('status')}, {charger.get('power_kw')} kW"
    )


def main() -> int:
    stop_on_signals()
    # Its own folder per demo when several run at once (the tests run demos in parallel).
    work_dir = Path(os.environ.get("DEMO_DIR", REPO_DIR / "var" / "demo")).resolve()
    shutil.rmtree(work_dir, ignore_errors=True)  # every demo starts from a clean slate
    (work_dir / "logs").mkdir(parents=True)
    demo = Demo(work_dir)
    say(f"logs: {demo.log_dir}/ (one file per process)")
    os.environ.pop("DATABASE_URL", None)  # the demo always runs on SQLite
    os.environ.pop("CELERY_BROKER_URL", None)  # and on the embedded brokers
    os.environ.pop("ENEXA_CELERY_BROKER_URL", None)
    try:
        demo.start_enexa()
        say(
            f"Enexa admin: {demo.enexa_url}/admin/ (user admin, password "
            f"{demo.admin_password}, this run only)"
        )
        say(
            f"API docs: {demo.enexa_url}/v1/docs/ (Redoc: /v1/redoc/)  Amperio API: "
            f"http://{demo.amperio_env['AMPERIO_API_BIND']}/v1/docs/"
        )
        port = demo.start_simulator()
        say(f"ChargePost simulator on Modbus/TCP 127.0.0.1:{port}")
        demo.provision()
        demo.start_amperio()
        demo.show_telemetry()
        demo.show_dashboard()  # readings are in: the site's page shows data at first look
        demo.show_dispatch()
        if os.environ.get("DEMO_ONCE"):
            return 0
        demo.report_forever()
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP (procs.Stopped)
        say(f"stopping ({str(exc) or 'Ctrl-C'})")
        return 0
    except ProcessExited as exc:
        say(f"{exc}; stopping the rest")
        return 1
    except Exception as exc:  # noqa: BLE001 - tell the user where to look
        say(f"failed: {exc}\nlogs: {demo.log_dir}")
        return 1
    finally:
        ignore_stop_signals()
        stop_all(demo.procs)
        say("stopped")
    return 0

"""`make demo` as a person meets it: a styled admin and API docs that need no internet, and a
demo that stops everything it started, however it is stopped or one of its parts dies."""

from __future__ import annotations

import os
import re
import signal
import sys
import uuid
from urllib.parse import urljoin

import pytest
import requests

from amperio.procs import Proc, free_port, port_available, wait_until
from tests.lifetimes import stopped_at_end
from tests.processes import command_line, processes_with

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ALL_UP = "telemetry arriving in Enexa"  # printed once Enexa, the simulator and Amperio run
LINKED = re.compile(r'(?:src|href|spec-url)="([^"]+)"')
ANY_URL = re.compile(r"""https?://[^\s"'<>)]+""")


class Demo:
    """`python -m demo` as a real process, its descendants marked in their environment
    (the demo starts each part in a session of its own)."""

    def __init__(self, log_dir):
        self.marker = f"demo-test-{uuid.uuid4().hex}"
        self.enexa_url = f"http://127.0.0.1:{free_port()}"
        self.amperio_url = f"http://127.0.0.1:{free_port()}"
        self.work_dir = log_dir / "demo"  # its own, so demos in parallel tests never share one
        self.proc = Proc(
            "demo",
            [sys.executable, "-m", "demo"],
            log_dir,
            {
                "ENEXA_DEMO_PORT": self.enexa_url.rsplit(":", 1)[1],
                "AMPERIO_DEMO_API_PORT": self.amperio_url.rsplit(":", 1)[1],
                "DEMO_TEST_MARKER": self.marker,
                "DEMO_DIR": str(self.work_dir),
            },
            stop_timeout_s=120,
        )
        try:
            wait_until(lambda: ALL_UP in self.output() or not self.proc.alive(), 240, 0.5)
            assert ALL_UP in self.output(), self.output()
            found = re.search(r"Modbus/TCP 127\.0\.0\.1:(\d+)", self.output())
            self.simulator_port = int(found.group(1))
        except BaseException:
            self.stop()
            raise

    def output(self) -> str:
        return self.proc.log()

    def ports(self) -> list[int]:
        return [int(self.enexa_url.rsplit(":", 1)[1]), int(self.amperio_url.rsplit(":", 1)[1]),
                self.simulator_port]  # fmt: skip

    def processes(self) -> list[int]:
        return processes_with(self.marker)

    def assert_everything_stopped(self) -> None:
        wait_until(lambda: self.processes() == [], 30, what="every process of the demo gone")
        assert [port for port in self.ports() if not port_available(port)] == []

    def stop(self) -> None:
        self.proc.stop()
        for pid in self.processes():  # whatever a failing demo left behind
            os.kill(pid, signal.SIGKILL)


def test_when_one_part_of_the_demo_dies_the_rest_stop_and_it_is_named_with_its_log(tmp_path):
    demo = Demo(tmp_path)
    try:
        assert len(demo.processes()) >= 10  # Enexa, simulator, Amperio and their workers
        simulator = next(p for p in demo.processes() if "amperio.simulator" in command_line(p))
        os.kill(simulator, signal.SIGKILL)
        assert demo.proc.popen.wait(timeout=120) == 1
        log = demo.work_dir.resolve() / "logs" / "simulator.log"
        assert f"simulator exited (code -9); its log: {log}; stopping the rest" in demo.output()
        demo.assert_everything_stopped()
    finally:
        demo.stop()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One running demo for the checks of what it serves; the module's last test stops it."""
    yield from stopped_at_end(Demo(tmp_path_factory.mktemp("demo")))


def test_the_demos_admin_login_page_is_styled(demo):
    login = requests.get(f"{demo.enexa_url}/admin/login/", timeout=10)
    assert login.status_code == 200
    stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', login.text)
    assert "/static/admin/css/base.css" in stylesheets
    for href in stylesheets:
        css = requests.get(urljoin(login.url, href), timeout=10)
        assert css.status_code == 200, href
        assert css.headers["Content-Type"].startswith("text/css"), href


@pytest.mark.parametrize("page", ["/v1/docs/", "/v1/redoc/"])
@pytest.mark.parametrize("side", ["enexa", "amperio"])
def test_the_api_docs_of_both_sides_load_nothing_from_another_host(demo, side, page):
    base = demo.enexa_url if side == "enexa" else demo.amperio_url
    wait_until(lambda: requests.get(f"{base}/v1/health", timeout=2).ok, 60, what=f"{side} up")
    response = requests.get(base + page, timeout=10)
    assert response.status_code == 200
    assert [url for url in ANY_URL.findall(response.text) if not url.startswith(base)] == []
    linked = LINKED.findall(response.text)
    assert any(url.endswith(".js") for url in linked), response.text
    for url in linked:
        asset = requests.get(urljoin(response.url, url), timeout=10)
        assert asset.status_code == 200, url
        assert asset.content, url


# Last in the module: it stops the demo the tests above share.
def test_sigterm_stops_every_process_the_demo_started_and_frees_its_ports(demo):
    assert len(demo.processes()) >= 10  # Enexa, simulator, Amperio and their workers
    demo.proc.popen.send_signal(signal.SIGTERM)  # to the demo alone, as `kill <pid>` does
    assert demo.proc.popen.wait(timeout=120) == 0
    assert "stopping (SIGTERM)" in demo.output()
    demo.assert_everything_stopped()

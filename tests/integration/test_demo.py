"""`make demo` does what the README promises: the whole system up, telemetry in Enexa, and a
dispatched battery setpoint reaching the simulator."""

import os
import re
import subprocess
import sys

import pytest

from amperio.procs import REPO_DIR as REPO
from amperio.procs import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_the_demo_shows_telemetry_arriving_and_a_dispatch_changing_the_battery_power(tmp_path):
    env = {
        "DEMO_DIR": str(tmp_path / "demo"),
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DEMO_ONCE": "1",
        "ENEXA_DEMO_PORT": str(free_port()),
        "AMPERIO_DEMO_API_PORT": str(free_port()),
    }
    result = subprocess.run(
        [sys.executable, "-m", "demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "telemetry arriving in Enexa" in output
    # The dashboard's address and an operator login that works, the site showing data at once.
    assert re.search(
        r"Dashboard: http://127\.0\.0\.1:\d+/app/ \(operator login: user operator, password "
        r"\S+, .*SITE001 shows SOC \d+\.\d %",
        output,
    ), output
    assert "applied" in output
    assert "BAT1 -25.0 kW, BAT2 -25.0 kW" in output

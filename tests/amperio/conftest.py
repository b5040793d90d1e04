"""Fixtures the Amperio tests share: ChargePost simulators that stop after the test."""

from __future__ import annotations

import pytest

from amperio.simulator.server import ChargePostSimulator


@pytest.fixture
def start_sim():
    """Start a simulator on a free port; speed 0, so simulated time moves only when a test steps
    it. `watchdog_timeout_s` long for tests that send no heartbeat; `no_arrivals` for tests
    that start every charging session themselves. Each is stopped after the test."""
    started: list[ChargePostSimulator] = []

    def start(*, seed: int = 0, watchdog_timeout_s: float | None = None, no_arrivals=False):
        simulator = ChargePostSimulator(port=0, speed=0, seed=seed).start()
        started.append(simulator)
        if watchdog_timeout_s is not None:
            simulator.state.watchdog_timeout_s = watchdog_timeout_s
        if no_arrivals:
            simulator.state.mean_arrival_s = 0
        return simulator

    try:
        yield start
    finally:
        for simulator in started:
            simulator.stop()


@pytest.fixture
def sim(start_sim):
    """A simulator with its defaults."""
    return start_sim()

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


@pytest.fixture
def sims(start_sim):
    """Two simulators: the two ChargePosts of one site."""
    return [start_sim(seed=n, watchdog_timeout_s=100_000, no_arrivals=True) for n in (1, 2)]


@pytest.fixture
def gw(tmp_path, sims):
    """A gateway of the two ChargePosts of `sims` (TWO_UNIT_LIMITS), its state in tmp_path."""
    from dataclasses import replace

    from amperio import gateway
    from amperio.enexa_link.configsync import validate_config, write_config
    from amperio.settings import load
    from tests.amperio.limits import TWO_UNIT_LIMITS

    settings = replace(load(), state_dir=tmp_path, key_file=tmp_path / "api_key")
    units = [{"host": "127.0.0.1", "port": sim.port} for sim in sims]
    config = {"version": 1, "settings": {"modbus": units}, "limits": TWO_UNIT_LIMITS}
    write_config(settings.config_path, validate_config(config))
    gw = gateway.Gateway(settings)
    try:
        yield gw
    finally:
        for client in gw.chargeposts(gw.config()):
            client.close()

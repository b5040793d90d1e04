"""Fixtures shared by the Enexa tests (the project-wide ones are in tests/conftest.py)."""

import pytest

from enexa.telemetry import services as telemetry_services
from tests.factories import BatterySystemFactory, BatteryUnitFactory, ChargerFactory


@pytest.fixture(autouse=True)
def _fresh_site_cache():
    """No test sees site ratings or last-seen times another cached in this process."""
    telemetry_services.clear_caches()
    yield
    telemetry_services.clear_caches()


@pytest.fixture
def equipped_site(site):
    """SITE001 as in the demo: a 220 kW battery of two 110 kW units and a 300 kW charger
    (grid 400 kW)."""
    system = BatterySystemFactory(site=site, code="BESS1")
    BatteryUnitFactory(site=site, code="BAT1", parent=system)
    BatteryUnitFactory(site=site, code="BAT2", parent=system)
    ChargerFactory(site=site, code="CHG1", max_power_kw=300.0)
    return site

"""The battery the optimizer tests plan for, changed where a test needs another."""

import dataclasses

from enexa.optimizer.problem import Battery

# SITE001's battery as in the demo: two 110 kW units taken as one, rounded.
SITE_BATTERY = Battery(
    capacity_kwh=200.0,
    max_charge_kw=100.0,
    max_discharge_kw=100.0,
    round_trip_efficiency=0.9,
    soc_min_pct=10.0,
    soc_max_pct=90.0,
    reserve_pct=20.0,
)


def battery(**changes: float) -> Battery:
    """SITE_BATTERY with `changes`."""
    return dataclasses.replace(SITE_BATTERY, **changes)

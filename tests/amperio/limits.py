"""The equipment limits the command and API tests dispatch against: two 110 kW battery units,
one 300 kW charger, a 400 kW grid connection."""

LIMITS = {
    "battery": {
        "max_charge_kw": 220,
        "max_discharge_kw": 220,
        "soc_min_pct": 10,
        "soc_max_pct": 90,
        "units": {
            "BAT1": {"max_charge_kw": 110, "max_discharge_kw": 110},
            "BAT2": {"max_charge_kw": 110, "max_discharge_kw": 110},
        },
    },
    "chargers": {"CHG1": {"max_power_kw": 300}},
    "grid": {"limit_kw": 400},
}

# Two ChargePosts: four battery units and two chargers, as Enexa's registry would list them;
# and a CHG3 the registry lists but no configured ChargePost holds (a registry out of step).
TWO_UNIT_LIMITS = {
    **LIMITS,
    "battery": {
        **LIMITS["battery"],
        "max_charge_kw": 440,
        "max_discharge_kw": 440,
        "units": {f"BAT{n}": {"max_charge_kw": 110, "max_discharge_kw": 110} for n in range(1, 5)},
    },
    "chargers": {f"CHG{n}": {"max_power_kw": 300} for n in (1, 2, 3)},
}

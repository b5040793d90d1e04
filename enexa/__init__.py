"""Enexa: the energy platform (asset registry, configuration, firmware, telemetry, dispatch)."""

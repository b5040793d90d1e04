"""Models of enexa.telemetry."""

"""Amperio's HTTP API (Django + DRF): /v1/dispatch and /v1/health, the only HTTP layer here."""

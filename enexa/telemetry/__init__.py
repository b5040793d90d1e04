"""Telemetry ingest and storage, site status and events."""

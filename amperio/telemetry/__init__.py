"""The telemetry path: collector (reads), outbox (keeps), flusher (sends to Enexa)."""

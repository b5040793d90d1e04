"""A settable wall clock for the outbox and flusher tests (what the outbox stamps items with)."""

from datetime import UTC, datetime, timedelta


class Wall:
    def __init__(self):
        self.now = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += timedelta(seconds=seconds)

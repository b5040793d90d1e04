"""Why the gateway refuses a command: the errors the API maps to problem details."""

from __future__ import annotations


class CommandError(Exception):
    """A command refused by the gateway; `errors` maps field -> messages."""

    def __init__(self, detail: str, errors: dict[str, list[str]] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or {}


class CommandConflict(CommandError):
    """The command_id was already used for a different command (the API answers 422)."""


class LimitsUnknown(CommandError):
    """No configuration is applied yet, so the limits to check against are unknown (503)."""


class UnknownCommand(CommandError):
    """No command with that id (404)."""

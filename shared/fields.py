"""Readers for wire values that collect every error with its field path instead of stopping."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from .errors import SchemaError

T = TypeVar("T")
# The longest timestamp text read: RFC 3339 with microseconds and an offset is 32.
MAX_TIMESTAMP_LENGTH = 40


class Reader:
    """Reads typed values out of a JSON object, collecting errors under dotted paths."""

    def __init__(self, data: Any, path: str = "", errors: dict[str, list[str]] | None = None):
        self.path = path
        self.errors: dict[str, list[str]] = {} if errors is None else errors
        if not isinstance(data, dict):
            self.error("", "Must be a JSON object.")
            data = {}
        self.data: dict[str, Any] = data

    def field(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> None:
        key = self.field(name) if name else (self.path or "non_field_errors")
        self.errors.setdefault(key, []).append(message)

    def child(self, name: str, *, required: bool = False) -> Reader | None:
        value = self.data.get(name)
        if value is None:
            if required:
                self.error(name, "This field is required.")
            return None
        return Reader(value, self.field(name), self.errors)

    def items(self, name: str) -> list[Reader]:
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(name, "Must be a list.")
            return []
        return [
            Reader(item, f"{self.field(name)}.{i}", self.errors) for i, item in enumerate(value)
        ]

    def string(
        self,
        name: str,
        *,
        required: bool = False,
        max_length: int = 200,
        choices: tuple[str, ...] | None = None,
    ) -> str | None:
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                self.error(name, "This field is required.")
            return None
        if not isinstance(value, str):
            self.error(name, "Must be a string.")
            return None
        if len(value) > max_length:
            self.error(name, f"At most {max_length} characters.")
            return None
        if choices is not None and value not in choices:
            self.error(name, "Must be one of: " + ", ".join(choices) + ".")
            return None
        return value

    def number(
        self,
        name: str,
        *,
        required: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float | None:
        value = self.data.get(name)
        if value is None:
            if required:
                self.error(name, "This field is required.")
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.error(name, "Must be a number.")
            return None
        value = float(value)
        if not math.isfinite(value):
            self.error(name, "Must be a finite number (no NaN or infinity).")
            return None
        if minimum is not None and value < minimum:
            self.error(name, f"Must be at least {minimum:g}.")
            return None
        if maximum is not None and value > maximum:
            self.error(name, f"Must be at most {maximum:g}.")
            return None
        return value

    def integer(
        self, name: str, *, required: bool = False, minimum: int | None = None
    ) -> int | None:
        value = self.data.get(name)
        if value is None:
            if required:
                self.error(name, "This field is required.")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(name, "Must be an integer.")
            return None
        if minimum is not None and value < minimum:
            self.error(name, f"Must be at least {minimum}.")
            return None
        return value

    def boolean(
        self, name: str, *, required: bool = False, default: bool | None = None
    ) -> bool | None:
        value = self.data.get(name)
        if value is None:
            if required:
                self.error(name, "This field is required.")
            return default
        if not isinstance(value, bool):
            self.error(name, "Must be true or false.")
            return default
        return value

    def timestamp(self, name: str, *, required: bool = False) -> datetime | None:
        value = self.data.get(name)
        if value is None:
            if required:
                self.error(name, "This field is required.")
            return None
        parsed = parse_timestamp(value)
        if parsed is None:
            self.error(
                name, "Must be an RFC 3339 timestamp with an offset, e.g. 2024-01-15T10:00:01Z."
            )
        return parsed

    def mapping(self, name: str) -> dict[str, Any]:
        value = self.data.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(name, "Must be a JSON object.")
            return {}
        return value

    def raise_if_errors(self) -> None:
        if self.errors:
            raise SchemaError(self.errors)


def parse(read: Callable[[Reader], T], data: Any) -> T:
    """`data` read by `read` (a schema's `read` classmethod); raises SchemaError with every
    problem found."""
    r = Reader(data)
    value = read(r)
    r.raise_if_errors()
    return value


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp with an offset, as an aware UTC datetime; None when invalid."""
    if not isinstance(value, str) or len(value) > MAX_TIMESTAMP_LENGTH:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with a Z suffix, microseconds kept only when present."""
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def split_batch(data: Any) -> tuple[list[Any], bool]:
    """`{"items": [...]}` is a batch; anything else is one item. Returns (items, is_batch)."""
    if isinstance(data, dict) and set(data) == {"items"}:
        items = data["items"]
        if not isinstance(items, list):
            raise SchemaError({"items": ["Must be a list."]})
        return items, True
    return [data], False

"""Readers for wire values that collect every error with its field path instead of stopping."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from .errors import SchemaError

# Text no database here can hold: NUL (PostgreSQL refuses it) and lone UTF-16 surrogates, which
# a JSON `\ud800` escape yields but UTF-8 cannot encode (the driver raises on them).
UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_TEXT_ERROR = "Must be text without NUL characters or lone UTF-16 surrogates."

# Timestamps accepted on the wire, in UTC. Nothing on it predates the Unix epoch, and the last
# year of the calendar is left out so that adding a validity or a range to an accepted
# timestamp never overflows.
EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(9998, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
TIMESTAMP_FORMAT_ERROR = "Must be an RFC 3339 timestamp with an offset, e.g. 2024-01-15T10:00:01Z."
TIMESTAMP_RANGE_ERROR = "Must lie between 1970-01-01T00:00:00Z and 9998-12-31T23:59:59Z."
# The largest integer a 32-bit database column holds (Django's IntegerField on PostgreSQL).
MAX_INT32 = 2**31 - 1
# The longest timestamp text read: RFC 3339 with microseconds and an offset is 32.
MAX_TIMESTAMP_LENGTH = 40
T = TypeVar("T")


class Reader:
    """Reads typed values out of a JSON object, collecting errors under dotted paths."""

    def __init__(
        self,
        data: Any,
        path: str = "",
        errors: dict[str, list[str]] | None = None,
        parent: Reader | None = None,
        name: str = "",
        index: int | None = None,
    ):
        # A nested reader's path (`battery.units.1`) is spelled out only when an error needs
        # it: readings are read by the thousand, and almost never have one.
        self._path = path
        self._parent, self._name, self._index = parent, name, index
        self.errors: dict[str, list[str]] = {} if errors is None else errors
        if not isinstance(data, dict):
            self.error("", "Must be a JSON object.")
            data = {}
        self.data: dict[str, Any] = data

    @property
    def path(self) -> str:
        if self._parent is not None:
            base = self._parent.field(self._name)
            self._path = base if self._index is None else f"{base}.{self._index}"
            self._parent = None
        return self._path

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
        # Positional: keyword arguments cost a nested reader (made by the thousand) 40 %.
        return Reader(value, "", self.errors, self, name)

    def items(self, name: str, *, max_items: int | None = None) -> list[Reader]:
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(name, "Must be a list.")
            return []
        if max_items is not None and len(value) > max_items:
            self.error(name, f"At most {max_items} items.")
            return []
        return [Reader(item, "", self.errors, self, name, i) for i, item in enumerate(value)]

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
        if UNSTORABLE_TEXT.search(value):
            self.error(name, UNSTORABLE_TEXT_ERROR)
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
        if type(value) is float and math.isfinite(value):  # the common case, checked first
            if (minimum is None or value >= minimum) and (maximum is None or value <= maximum):
                return value
        elif value is None:
            if required:
                self.error(name, "This field is required.")
            return None
        elif type(value) is not float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.error(name, "Must be a number.")
                return None
            try:
                value = float(value)
            except OverflowError:  # an integer beyond any float, e.g. 10**400
                value = math.inf
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
        self,
        name: str,
        *,
        required: bool = False,
        minimum: int | None = None,
        maximum: int | None = None,
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
        if maximum is not None and value > maximum:
            self.error(name, f"Must be at most {maximum}.")
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
        parsed, message = read_timestamp(value)
        if message is not None:
            self.error(name, message)
        return parsed

    def mapping(self, name: str) -> dict[str, Any]:
        value = self.data.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(name, "Must be a JSON object.")
            return {}
        bad = find_unstorable_text(value)
        if bad is not None:
            self.error(f"{name}.{bad}" if bad else name, UNSTORABLE_TEXT_ERROR)
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


def find_unstorable_text(value: Any) -> str | None:
    """The dotted path of the first string in a JSON value that UNSTORABLE_TEXT refuses (the
    path of the object for a refused key; "" for `value` itself), or None when all is storable.

    Iterative, so no nesting depth can exhaust the stack; a path never holds refused text."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if UNSTORABLE_TEXT.search(item):
                return path
        elif isinstance(item, dict):
            if any(UNSTORABLE_TEXT.search(key) for key in item if isinstance(key, str)):
                return path
            stack.extend((f"{path}.{key}" if path else str(key), v) for key, v in item.items())
        elif isinstance(item, list):
            stack.extend((f"{path}.{i}" if path else str(i), v) for i, v in enumerate(item))
    return None


def read_timestamp(value: Any) -> tuple[datetime | None, str | None]:
    """(the RFC 3339 timestamp with an offset as an aware UTC datetime, None), or (None, why
    it is refused): not that format, or outside EARLIEST_TIMESTAMP..LATEST_TIMESTAMP (which
    also covers values whose offset pushes them past the calendar's ends)."""
    if not isinstance(value, str) or len(value) > MAX_TIMESTAMP_LENGTH:
        return None, TIMESTAMP_FORMAT_ERROR
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None, TIMESTAMP_FORMAT_ERROR
    if parsed.tzinfo is None:
        return None, TIMESTAMP_FORMAT_ERROR
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        return None, TIMESTAMP_RANGE_ERROR
    if not EARLIEST_TIMESTAMP <= utc <= LATEST_TIMESTAMP:
        return None, TIMESTAMP_RANGE_ERROR
    return utc, None


def read_range(
    params: Mapping[str, Any], errors: dict[str, list[str]]
) -> tuple[datetime | None, datetime | None]:
    """A query's optional `from` and `to` as read_timestamp reads them: None where absent or
    empty, and each refused one's reason added to `errors` under its name."""
    values: list[datetime | None] = []
    for name in ("from", "to"):
        raw = params.get(name)
        value, message = read_timestamp(raw) if raw else (None, None)
        if message is not None:
            errors[name] = [message]
        values.append(value)
    return values[0], values[1]


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp with an offset, as an aware UTC datetime; None when invalid or
    out of range (see read_timestamp for the reason)."""
    return read_timestamp(value)[0]


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

"""OpenAPI 3.0 schemas of the wire formats, derived from the readers that validate them.

Each wire format is defined once, by its `read` classmethod: the fields it reads, their types
and limits. Running that method on a `SchemaRecorder` (a Reader that holds no data and writes
down every field it is asked for) yields the format's JSON schema, so the published schema
cannot drift from what either side accepts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .dispatch import PARAMS, DispatchCommand
from .events import Event
from .fields import MAX_TIMESTAMP_LENGTH, Reader
from .status import StatusReport
from .telemetry import TelemetryReading

Schema = dict[str, Any]
COMPONENTS_PATH = "#/components/schemas/"


class SchemaRecorder(Reader):
    """A Reader over no data that records each field read as a JSON-schema property.

    Values read are absent (None, or a nested recorder for objects and list items) so the
    schema's `read` takes the path of a minimal document and asks for every field on it."""

    def __init__(self, path: str = ""):
        super().__init__({}, path)
        self.properties: dict[str, Schema | SchemaRecorder] = {}
        self.list_items: dict[str, int | None] = {}  # list field -> its maxItems
        self.required: list[str] = []

    def schema(self) -> Schema:
        properties: dict[str, Schema] = {}
        for name, value in self.properties.items():
            if isinstance(value, SchemaRecorder):
                nested = value.schema()
                if name in self.list_items:
                    value = {"type": "array", "items": nested}
                    if self.list_items[name] is not None:
                        value["maxItems"] = self.list_items[name]
                else:
                    value = nested
                if name not in self.required:
                    value["nullable"] = True
            properties[name] = value
        out: Schema = {"type": "object", "properties": properties}
        if self.required:
            out["required"] = list(self.required)
        return out

    def _add(self, name: str, schema: Schema | SchemaRecorder, required: bool) -> None:
        if required:
            self.required.append(name)
        elif isinstance(schema, dict):
            schema["nullable"] = True  # null reads as absent
        self.properties[name] = schema

    def child(self, name: str, *, required: bool = False) -> Reader | None:
        nested = SchemaRecorder(self.field(name))
        self._add(name, nested, required)
        return nested

    def items(self, name: str, *, max_items: int | None = None) -> list[Reader]:
        nested = SchemaRecorder(f"{self.field(name)}.0")
        self._add(name, nested, False)
        self.list_items[name] = max_items
        return [nested]

    def string(
        self,
        name: str,
        *,
        required: bool = False,
        max_length: int = 200,
        choices: tuple[str, ...] | None = None,
    ) -> str | None:
        schema: Schema = {"type": "string"}
        if choices is not None:
            schema["enum"] = list(choices)
        else:
            schema["maxLength"] = max_length
            if required:
                schema["minLength"] = 1  # an empty string reads as missing
        self._add(name, schema, required)
        return None

    def number(
        self,
        name: str,
        *,
        required: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float | None:
        self._add_bounded(name, "number", required, minimum, maximum)
        return None

    def integer(
        self,
        name: str,
        *,
        required: bool = False,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        self._add_bounded(name, "integer", required, minimum, maximum)
        return None

    def _add_bounded(
        self, name: str, kind: str, required: bool, minimum: float | None, maximum: float | None
    ) -> None:
        bounds = {"minimum": minimum, "maximum": maximum}
        schema: Schema = {"type": kind, **{k: v for k, v in bounds.items() if v is not None}}
        self._add(name, schema, required)

    def boolean(
        self, name: str, *, required: bool = False, default: bool | None = None
    ) -> bool | None:
        schema: Schema = {"type": "boolean"}
        if default is not None:
            schema["default"] = default
        self._add(name, schema, required)
        return default

    def timestamp(self, name: str, *, required: bool = False) -> None:
        schema = {"type": "string", "format": "date-time", "maxLength": MAX_TIMESTAMP_LENGTH}
        self._add(name, schema, required)
        return None

    def mapping(self, name: str) -> dict[str, Any]:
        self._add(name, {"type": "object", "additionalProperties": True}, False)
        return {}


def object_schema(read: Callable[[Reader], object], description: str | None = None) -> Schema:
    """The JSON schema of what `read` (a wire format's `read` classmethod) accepts."""
    recorder = SchemaRecorder()
    read(recorder)
    schema = recorder.schema()
    if description:
        schema["description"] = " ".join(description.split())
    return schema


def ref(name: str) -> Schema:
    """A reference to the component `name` of `components()`."""
    return {"$ref": COMPONENTS_PATH + name}


def one_or_batch(name: str) -> Schema:
    """A request body of one item of component `name`, or a batch `{"items": [...]}` of them
    (shared.fields.split_batch); the batch component is `<name>Batch`."""
    return {"oneOf": [ref(name), ref(name + "Batch")]}


def _batch(name: str) -> Schema:
    return {
        "type": "object",
        "description": f"A batch of {name} items; each is stored or refused on its own.",
        "properties": {"items": {"type": "array", "items": ref(name)}},
        "required": ["items"],
        "additionalProperties": False,
    }


def _dispatch_command() -> Schema:
    """One variant per command: its name fixes the shape of `params`."""
    variants = []
    for command, read_params in PARAMS.items():
        variant = object_schema(DispatchCommand.read)
        variant["title"] = command
        variant["properties"]["command"] = {"type": "string", "enum": [command]}
        variant["properties"]["params"] = object_schema(read_params)
        variants.append(variant)
    return {"oneOf": variants, "description": " ".join((DispatchCommand.__doc__ or "").split())}


def components() -> dict[str, Schema]:
    """Every wire format as an OpenAPI component schema, by name."""
    return {
        "TelemetryReading": object_schema(TelemetryReading.read, TelemetryReading.__doc__),
        "TelemetryReadingBatch": _batch("TelemetryReading"),
        "Event": object_schema(Event.read, Event.__doc__),
        "EventBatch": _batch("Event"),
        "StatusReport": object_schema(StatusReport.read, StatusReport.__doc__),
        "DispatchCommand": _dispatch_command(),
    }


def add_components(result: Schema, **kwargs: Any) -> Schema:
    """A drf-spectacular postprocessing hook adding `components()` to a generated schema.

    It runs after the enum hook, so the wire formats keep their enums inline, exactly as
    derived here, and the names of the schema's other enum components do not change."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    wire = components()
    wanted = _refs(result)
    while wanted & wire.keys() - schemas.keys():  # the used ones and what they refer to
        for name in wanted & wire.keys() - schemas.keys():
            schemas[name] = wire[name]
            wanted |= _refs(wire[name])
    result["components"]["schemas"] = dict(sorted(schemas.items()))
    return result


def _refs(value: Any) -> set[str]:
    """The component names `value` refers to, at any depth."""
    if isinstance(value, dict):
        found = {value["$ref"][len(COMPONENTS_PATH) :]} if "$ref" in value else set()
        return found.union(*(_refs(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value))
    return set()

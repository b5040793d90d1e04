"""OpenAPI shape of a settings document, derived from the field rules that validate it
(shared.site_config.RULES): a section per object, each value typed and bounded, null to inherit."""

import copy
from typing import Any

from enexa.api.schema import Schema, nullable
from shared.site_config import MAX_MODBUS_UNITS, RULES

from .services import READ_ONLY_KEYS


def _value(rule: tuple) -> Schema:
    """The JSON schema of one value checked by `rule` (see shared.site_config.check_value)."""
    kind = rule[0]
    if kind in ("int", "number"):
        return {
            "type": "integer" if kind == "int" else "number",
            "minimum": rule[1],
            "maximum": rule[2],
        }
    if kind == "host":
        return {"type": "string", "minLength": 1, "maxLength": 253, "pattern": "^[^ ]+$"}
    if kind == "choice":
        return {"type": "string", "enum": list(rule[1])}
    raise ValueError(f"No schema for the rule {rule!r}.")


def _section(rules: Any) -> Schema:
    if isinstance(rules, tuple):
        return nullable(_value(rules))
    properties = {name: nullable(_value(rule)) for name, rule in rules.items()}
    return nullable({"type": "object", "properties": properties, "additionalProperties": False})


def modbus_units(nullable: bool = True) -> Schema:
    """`modbus`: one ChargePost's address, or a list of them (one per unit, each with its
    host; see shared.site_config.unit_list_errors); null (inherit) only where `nullable`."""
    unit = _section(RULES["modbus"])
    unit.pop("nullable")
    listed = copy.deepcopy(unit)
    listed["properties"]["host"].pop("nullable")
    listed["required"] = ["host"]
    units = {"type": "array", "minItems": 1, "maxItems": MAX_MODBUS_UNITS, "items": listed}
    schema: Schema = {"oneOf": [unit, units]}
    return {**schema, "nullable": True} if nullable else schema


def settings_document() -> Schema:
    """A sparse settings document as PUT and PATCH take it (a JSON merge patch for PATCH)."""
    properties = {key: _section(rules) for key, rules in RULES.items()}
    properties["modbus"] = modbus_units()
    # Read-only keys of a document read back are accepted and ignored, so a GET can be sent back.
    properties.update({key: {"readOnly": True} for key in READ_ONLY_KEYS})
    return {
        "type": "object",
        "description": "Settings left out or null are inherited (defaults, then the site's).",
        "properties": properties,
        "additionalProperties": False,
    }

"""OpenAPI shapes of the telemetry API's bodies: the wire formats of shared.openapi, and what
the read views answer (stored readings and events, buckets, status, outages)."""

from enexa.api.errors import PROBLEM_CONTENT_TYPE
from enexa.api.schema import DATETIME, PROBLEM, Schema, fields, nullable
from shared import openapi as wire
from shared.status import StatusReport

from .availability import AVAILABILITY_PERIODS
from .choices import Resolution
from .energy import FIGURES
from .models import METRICS
from .periods import PERIODS
from .queries import STATS

FIELD_ERRORS: Schema = {
    "type": "object",
    "description": "Field -> messages (nested fields as `a.b`).",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}
COUNTS_PROPERTIES: dict[str, Schema] = {
    "accepted": {"type": "integer"},
    "duplicate": {"type": "integer"},
    "rejected": {"type": "integer"},
    "errors": {
        "type": "array",
        "items": fields(
            index={"type": "integer"},
            message_id=nullable({"type": "string"}),
            errors=FIELD_ERRORS,
        ),
    },
}
COUNTS: Schema = fields(**COUNTS_PROPERTIES)
# 400: the counts beside the problem fields when every item was refused (its `errors` then the
# list of refused items); a plain problem when the body as a whole is unreadable.
REFUSED: Schema = {
    "anyOf": [
        {
            "allOf": [
                COUNTS,
                fields(
                    type={"type": "string", "format": "uri"},
                    title={"type": "string"},
                    status={"type": "integer"},
                    detail={"type": "string"},
                ),
            ]
        },
        PROBLEM,
    ]
}


# 201 when something new was stored, 200 when nothing new was.
INGEST_RESPONSES: dict = {201: COUNTS, 200: COUNTS, (400, PROBLEM_CONTENT_TYPE): REFUSED}


def _stored(name: str) -> Schema:
    """A wire item as stored and read back: the item plus when Enexa received it."""
    return {"allOf": [wire.ref(name), fields(received_at=DATETIME)]}


STORED_READING = _stored("TelemetryReading")
STORED_EVENT = _stored("Event")
BUCKET: Schema = {
    "type": "object",
    "description": "One bucket: its start, its number of readings, and per metric the "
    "average, minimum, maximum and last value (null without values).",
    "properties": {
        "timestamp": DATETIME,
        "count": {"type": "integer"},
        **{
            m: nullable(fields(**{s: nullable({"type": "number"}) for s in STATS})) for m in METRICS
        },
    },
    "required": ["timestamp", "count", *METRICS],
}
TELEMETRY_RANGE: Schema = {
    "type": "object",
    "properties": {
        "site_id": {"type": "string"},
        "from": DATETIME,
        "to": DATETIME,
        "resolution": {"type": "string", "enum": list(Resolution.values)},
        "points": {
            "type": "array",
            "description": "Readings at `raw`, else buckets.",
            "items": {"anyOf": [STORED_READING, BUCKET]},
        },
        "next_from": nullable(
            {**DATETIME, "description": "`raw` only: where the next page starts, if any."}
        ),
    },
    "required": ["site_id", "from", "to", "resolution", "points"],
}
TELEMETRY_CSV: Schema = {"type": "string", "description": "CSV, a header line first."}
LATEST = fields(
    site_id={"type": "string"},
    online={"type": "boolean"},
    last_seen_at=nullable(DATETIME),
    reading=nullable(STORED_READING),
)
_REPORTED = wire.object_schema(StatusReport.read)["properties"]
SITE_STATUS = fields(
    site_id={"type": "string"},
    online={"type": "boolean", "description": "Heard from within ENEXA_OFFLINE_AFTER_S."},
    last_seen_at=nullable(DATETIME),
    reported_at=nullable(DATETIME),
    # As the gateway last reported them (shared.status.StatusReport).
    **{
        name: _REPORTED[name]
        for name in (
            "controller_id",
            "mode",
            "config_version",
            "firmware_version",
            "modbus_link_up",
            "buffer_depth",
        )
    },
    # As Amperio's `GET /v1/health` last said, polled by Enexa's worker; null before the first
    # poll that reached Amperio.
    gateway=nullable(
        fields(
            status={
                "type": "string",
                "enum": ["ok", "degraded", "not_reported"],
                "description": "not_reported: Amperio answered without this site.",
            },
            modbus_link_up=nullable({"type": "boolean"}),
            watchdog_beating=nullable({"type": "boolean"}),
            mode=nullable({"type": "string"}),
            autonomy=nullable({"type": "string"}),
            buffer_depth=nullable({"type": "integer"}),
            unconfirmed_commands=nullable({"type": "integer"}),
            last_report_at=nullable(DATETIME),
            last_report_age_s=nullable({"type": "number"}),
            at=DATETIME,
        )
    ),
)
EVENTS = fields(site_id={"type": "string"}, events={"type": "array", "items": STORED_EVENT})
_STRETCH = {"type": "array", "items": {"type": "object", "additionalProperties": True}}
OUTAGES = fields(
    site_id={"type": "string"},
    outages={
        "type": "array",
        "items": fields(
            silent_since=DATETIME,
            offline_at=DATETIME,
            online_at=nullable(DATETIME),
            interval_s={"type": "number"},
            readings_expected={"type": "integer"},
            readings_received={"type": "integer"},
            readings_backfilled={"type": "integer"},
            readings_missing={"type": "integer"},
            buckets=_STRETCH,
            backfilled_ranges=_STRETCH,
            gaps=_STRETCH,
            commands={"type": "object", "additionalProperties": True},
            reconciled_at=nullable(DATETIME),
        ),
    },
)


def _per_period(periods: tuple[str, ...], item: Schema, description: str) -> Schema:
    """The envelope of figures per period: the site, the range, the period and its items."""
    return fields(
        site_id={"type": "string"},
        **{"from": DATETIME, "to": DATETIME},
        period={"type": "string", "enum": list(periods)},
        timezone={
            "type": "string",
            "description": "The IANA time zone whose midnights cut the days and months (`tz`, "
            "by default the site's). Hours are UTC hours.",
        },
        periods={"type": "array", "description": description, "items": item},
    )


_KWH = nullable({"type": "number", "description": "kWh; null without values to compute it."})
ENERGY: Schema = {
    "allOf": [
        _per_period(
            PERIODS,
            fields(start=DATETIME, **dict.fromkeys(FIGURES, _KWH)),
            "The periods with readings, oldest first; `start` is the instant the period "
            "begins (a local midnight for days and months), in UTC.",
        ),
        fields(
            methods={
                "type": "object",
                "description": "How each figure is found: `counter` (increases of a cumulative "
                "counter, a drop counted as a reset) or `integrated_power` (power over time).",
                "additionalProperties": {
                    "type": "string",
                    "enum": ["counter", "integrated_power"],
                },
            }
        ),
    ]
}
ENERGY_CSV: Schema = {
    "type": "string",
    "description": "CSV: a header line `start," + ",".join(FIGURES) + ",timezone`, then a "
    "line per period; an empty cell where a figure is null; `timezone` is the IANA zone whose "
    "midnights cut the days and months.",
}
_PCT = nullable({"type": "number", "description": "Percent; null when nothing was observed."})
AVAILABILITY = _per_period(
    AVAILABILITY_PERIODS,
    fields(
        start=DATETIME,
        end=DATETIME,
        observed_s={
            "type": "number",
            "description": "Seconds of the period past and after the site's first "
            "online/offline transition.",
        },
        online_s={"type": "number"},
        online_pct=_PCT,
        chargers_available_pct=_PCT,
        chargers={
            "type": "object",
            "description": "Charger id -> its in-service share of reports (percent).",
            "additionalProperties": _PCT,
        },
    ),
    "Every period meeting the range, oldest first, clipped to it; `start` and `end` in UTC.",
)

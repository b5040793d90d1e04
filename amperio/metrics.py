"""The gateway's Prometheus metrics, right with several processes.

The worker (control cycle: Modbus reads), the watchdog worker (beats) and the API (which
serves `GET /metrics`) are separate processes, on a gateway with no shared memory between
them. What they count goes into a small SQLite file in the state directory
(`metrics.sqlite3`: counters and histogram buckets, added to with one UPSERT each), durable
across restarts as Prometheus counters may be; the API reads it at scrape time, together with
what the other stores already hold (the outbox's depth and oldest item, the command table per
status, the watchdog's last beat and link state). No process-local registry is involved, so
any number of worker processes and API workers agree."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from amperio.sqlite import Connections
from amperio.state import StateKey

# A Modbus read of a ChargePost's snapshot (two coalesced requests) takes milliseconds on a
# LAN; the client's timeout bounds the slow end.
MODBUS_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
MODBUS_READ = "amperio_modbus_read_seconds"
MODBUS_ERRORS = "amperio_modbus_read_errors_total"
WATCHDOG_BEATS = "amperio_watchdog_beats_total"

SCHEMA = """
CREATE TABLE IF NOT EXISTS metric_values (
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (name, labels)
)
"""


def _labels(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True)


class MetricCounters:
    """Counters and histograms every gateway process adds to, in one SQLite file."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # NORMAL: a power cut may lose the last counts, never corrupt the file; no fsync per
        # control cycle for figures that are only statistics.
        self._connections = Connections(self.path, timeout_s=5, synchronous="NORMAL")
        self._connections.get().execute(SCHEMA)

    def add(self, increments: Sequence[tuple[str, dict[str, str], float]]) -> None:
        """Add each (name, labels, amount) in one transaction."""
        conn = self._connections.get()
        with conn:
            conn.executemany(
                "INSERT INTO metric_values (name, labels, value) VALUES (?, ?, ?) "
                "ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value",
                [(name, _labels(labels), amount) for name, labels, amount in increments],
            )

    def values(self) -> list[tuple[str, dict[str, str], float]]:
        rows = self._connections.get().execute("SELECT name, labels, value FROM metric_values")
        return [(name, json.loads(labels), value) for name, labels, value in rows]


Increment = tuple[str, dict[str, str], float]


def observe(
    name: str, labels: dict[str, str], value: float, buckets: Sequence[float]
) -> list[Increment]:
    """The increments of one histogram observation: each bucket it falls in (le), the sum and
    the count, Prometheus's own layout."""
    increments: list[Increment] = [
        (f"{name}_bucket", {**labels, "le": repr(float(bound))}, 1.0)
        for bound in buckets
        if value <= bound
    ]
    increments.append((f"{name}_bucket", {**labels, "le": "+Inf"}, 1.0))
    increments.append((f"{name}_sum", labels, value))
    increments.append((f"{name}_count", labels, 1.0))
    return increments


def record_modbus_read(
    counters: MetricCounters | None, chargepost: int, seconds: float, ok: bool
) -> None:
    """One snapshot read of ChargePost number `chargepost` (1-based): its time, and an error
    when it failed. Never raises: metrics must not break the control cycle."""
    if counters is None:
        return
    labels = {"chargepost": str(chargepost)}
    increments = observe(MODBUS_READ, labels, seconds, MODBUS_BUCKETS_S)
    if not ok:
        increments.append((MODBUS_ERRORS, labels, 1.0))
    _add_quietly(counters, increments)


def record_watchdog_beat(counters: MetricCounters | None, written: bool) -> None:
    """One heartbeat round: written to the ChargePosts, or withheld/failed."""
    if counters is not None:
        outcome = "written" if written else "missed"
        _add_quietly(counters, [(WATCHDOG_BEATS, {"outcome": outcome}, 1.0)])


def _add_quietly(counters: MetricCounters, increments: list[Increment]) -> None:
    try:
        counters.add(increments)
    except sqlite3.Error:
        pass  # a lost observation costs less than a failed cycle; the next one counts


def counted_families(counters: MetricCounters) -> Iterator[Metric]:
    """The stored counters and histograms as metric families."""
    values = counters.values()
    by_name: dict[str, list[tuple[dict[str, str], float]]] = {}
    for name, labels, value in values:
        by_name.setdefault(name, []).append((labels, value))
    errors = CounterMetricFamily(
        MODBUS_ERRORS[: -len("_total")],
        "Failed snapshot reads per ChargePost.",
        labels=["chargepost"],
    )
    for labels, value in by_name.get(MODBUS_ERRORS, []):
        errors.add_metric([labels["chargepost"]], value)
    yield errors
    beats = CounterMetricFamily(
        WATCHDOG_BEATS[: -len("_total")],
        "Watchdog heartbeat rounds by outcome.",
        labels=["outcome"],
    )
    for outcome in ("written", "missed"):
        found = [v for labels, v in by_name.get(WATCHDOG_BEATS, []) if labels["outcome"] == outcome]
        beats.add_metric([outcome], sum(found))
    yield beats
    yield _histogram(MODBUS_READ, "Time of one snapshot read per ChargePost.", by_name)


def _histogram(
    name: str, documentation: str, by_name: dict[str, list[tuple[dict[str, str], float]]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["chargepost"])
    sums = {labels["chargepost"]: v for labels, v in by_name.get(f"{name}_sum", [])}
    for chargepost in sorted(sums):
        buckets = sorted(
            (
                (labels["le"], v)
                for labels, v in by_name.get(f"{name}_bucket", [])
                if labels["chargepost"] == chargepost
            ),
            key=lambda item: float(item[0]),
        )
        family.add_metric([chargepost], buckets, sums[chargepost])
    return family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _age_s(value: Any, now: datetime) -> float | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (now - moment).total_seconds()


class GatewayFigures(Collector):
    """What a scrape shows of one gateway: counted events, then the stores' current state."""

    def __init__(
        self,
        counters: MetricCounters,
        depth: Any,
        state: dict[str, Any],
        command_counts: Any,
        now: datetime | None = None,
    ):
        # depth and command_counts are callables: each store is read only when scraped.
        self.counters, self.depth, self.state = counters, depth, state
        self.command_counts, self.now = command_counts, now

    def collect(self) -> Iterator[Metric]:
        now = self.now or datetime.now(UTC)
        yield from counted_families(self.counters)
        depth = self.depth()
        outbox = GaugeMetricFamily(
            "amperio_outbox_depth", "Items waiting in the outbox for Enexa.", labels=["kind"]
        )
        for kind in ("readings", "events", "dead_letter"):
            outbox.add_metric([kind], depth.get(kind, 0))
        yield outbox
        yield _gauge(
            "amperio_outbox_oldest_age_seconds",
            "Age of the oldest item waiting in the outbox (0 when empty): the backlog.",
            _age_s(depth.get("oldest_at"), now) or 0.0,
        )
        commands = GaugeMetricFamily(
            "amperio_commands", "Commands in the gateway's table by status.", labels=["status"]
        )
        for status, n in sorted(self.command_counts().items()):
            commands.add_metric([status], n)
        yield commands
        yield from self._state(now)

    def _state(self, now: datetime) -> Iterator[Metric]:
        state = self.state
        yield _gauge(
            "amperio_modbus_link_up",
            "1 when the last control cycle read every ChargePost.",
            1.0 if state.get(StateKey.MODBUS_LINK_UP) else 0.0,
        )
        beat_age = _age_s(state.get(StateKey.WATCHDOG_LAST_BEAT_AT), now)
        yield _gauge(
            "amperio_watchdog_last_beat_age_seconds",
            "Seconds since the last heartbeat was written (-1: never).",
            -1.0 if beat_age is None else beat_age,
        )
        yield _gauge(
            "amperio_enexa_reachable",
            "1 when the last call to Enexa succeeded.",
            1.0 if state.get(StateKey.ENEXA_REACHABLE) else 0.0,
        )


class FleetFigures(Collector):
    """What a scrape of the fleet backend shows: each site as its gateway last reported it
    (GET /v1/health's view) and the shared store's commands per site and status."""

    def __init__(self, health: dict[str, Any], command_counts: dict[tuple[str, str], int]):
        self.health, self.command_counts = health, command_counts

    def collect(self) -> Iterator[Metric]:
        per_site = {
            "amperio_site_ok": "1 when the site's gateway reports ok and was heard lately.",
            "amperio_site_report_age_seconds": "Seconds since the gateway last reported.",
            "amperio_site_outbox_depth": "Items in the gateway's outbox, as last reported.",
            "amperio_site_modbus_link_up": "1 when the gateway's Modbus link was up.",
            "amperio_site_watchdog_beating": "1 when the gateway's watchdog was beating.",
        }
        families = {
            name: GaugeMetricFamily(name, doc, labels=["site"]) for name, doc in per_site.items()
        }
        for site_id, site in sorted(self.health.get("sites", {}).items()):
            values = {
                "amperio_site_ok": site.get("status") == "ok",
                "amperio_site_report_age_seconds": site.get("last_report_age_s"),
                "amperio_site_outbox_depth": (site.get("buffer") or {}).get("depth"),
                "amperio_site_modbus_link_up": (site.get("modbus") or {}).get("link_up"),
                "amperio_site_watchdog_beating": (site.get("watchdog") or {}).get("beating"),
            }
            for name, value in values.items():
                if value is not None:  # not yet reported: no sample rather than a false 0
                    families[name].add_metric([site_id], float(value))
        yield from families.values()
        commands = GaugeMetricFamily(
            "amperio_backend_commands",
            "Commands in the shared store by site and status.",
            labels=["site", "status"],
        )
        for (site_id, status), n in sorted(self.command_counts.items()):
            commands.add_metric([site_id, status], n)
        yield commands


def render(collector: Collector) -> bytes:
    """The Prometheus text format of one collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)

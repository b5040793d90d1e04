"""The telemetry services' public face: ingest (readings, events, status reports), presence
(online and offline), the status view, outage reports, and chart series from the aggregates.
Each job lives in its own module: ingest, storage, reports, presence, outages, aggregates,
partitions, queries."""

from .aggregates import refresh_aggregates
from .ingest import (
    NOT_YOUR_SITE,
    IngestResult,
    Poster,
    clear_caches,
    ingest_events,
    ingest_readings,
    record_status,
    site_ratings,
)
from .outages import outage_view, reconcile_outage, reconcile_outages, recover_site, sync_state
from .partitions import create_ahead as create_partitions_ahead
from .presence import come_online, go_offline, mark_offline_sites, touch_sites
from .queries import MetricStats, SlotStats, latest_readings, pick_resolution, series, slot_stats
from .reports import (
    is_online,
    offline_after,
    poll_gateway_health,
    record_gateway_health,
    site_status,
    status_view,
)

__all__ = [
    "MetricStats",
    "SlotStats",
    "NOT_YOUR_SITE",
    "IngestResult",
    "Poster",
    "clear_caches",
    "come_online",
    "create_partitions_ahead",
    "go_offline",
    "ingest_events",
    "ingest_readings",
    "is_online",
    "latest_readings",
    "mark_offline_sites",
    "offline_after",
    "outage_view",
    "pick_resolution",
    "poll_gateway_health",
    "reconcile_outage",
    "reconcile_outages",
    "record_gateway_health",
    "record_status",
    "recover_site",
    "refresh_aggregates",
    "series",
    "site_ratings",
    "slot_stats",
    "site_status",
    "status_view",
    "sync_state",
    "touch_sites",
]

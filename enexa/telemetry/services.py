"""The telemetry services' public face: ingest (readings, events, status reports), presence
(online and offline), the status view and outage reports. Each job lives in its own module:
ingest, storage, reports, presence, outages."""

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
from .presence import come_online, go_offline, mark_offline_sites, touch_sites
from .reports import (
    is_online,
    offline_after,
    poll_gateway_health,
    record_gateway_health,
    site_status,
    status_view,
)

__all__ = [
    "NOT_YOUR_SITE",
    "IngestResult",
    "Poster",
    "clear_caches",
    "come_online",
    "go_offline",
    "ingest_events",
    "ingest_readings",
    "is_online",
    "mark_offline_sites",
    "offline_after",
    "outage_view",
    "poll_gateway_health",
    "reconcile_outage",
    "reconcile_outages",
    "record_gateway_health",
    "record_status",
    "recover_site",
    "site_ratings",
    "site_status",
    "status_view",
    "sync_state",
    "touch_sites",
]

"""Enexa's Prometheus metrics that processes count as things happen: ingest (rate, latency,
outcome of each item), webhook delivery attempts, optimizer solve time. Import the object and
call it where the thing happens, e.g. `WEBHOOK_ATTEMPTS.labels(outcome="delivered").inc()`.

With several processes (gunicorn workers, the Celery worker) each has its own counters:
set PROMETHEUS_MULTIPROC_DIR (the same empty directory for every process of one host, wiped
before they start) and prometheus-client keeps them in files there that `GET /metrics` sums.
Figures that describe state rather than events (commands per status, the delivery queue, sites
online, the gateways' buffers) are read from the database at scrape time instead
(enexa.api.metrics), which is right whatever the number of processes or hosts."""

from __future__ import annotations

import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Ingest requests take milliseconds; a batch of thousands up to a second or two.
INGEST_BUCKETS_S = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SOLVER_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

INGEST_SECONDS = Histogram(
    "enexa_ingest_seconds",
    "Time to validate and store one ingest request (its _count is the request rate).",
    ["kind"],  # telemetry, events
    buckets=INGEST_BUCKETS_S,
)
INGESTED_ITEMS = Counter(
    "enexa_ingested_items",
    "Items posted by gateways, by kind and outcome.",
    ["kind", "outcome"],  # kind: telemetry, events; outcome: accepted, duplicate, rejected
)
WEBHOOK_ATTEMPTS = Counter(
    "enexa_webhook_attempts",
    "Webhook delivery attempts, by outcome (delivered, failed, timeout, refused, ...).",
    ["outcome"],
)
SOLVER_SECONDS = Histogram(
    "enexa_solver_seconds",
    "Wall time of one optimizer solve.",
    buckets=SOLVER_BUCKETS_S,
)


def counted_metrics() -> bytes:
    """The counters and histograms in the Prometheus text format: every process's summed
    when PROMETHEUS_MULTIPROC_DIR is set, else this process's (with its own process stats)."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


# Every series shown from the start (at 0), so a dashboard's rate() has a baseline.
for _kind in ("telemetry", "events"):
    INGEST_SECONDS.labels(kind=_kind)
    for _outcome in ("accepted", "duplicate", "rejected"):
        INGESTED_ITEMS.labels(kind=_kind, outcome=_outcome)

"""Stored telemetry readings (site-level columns, battery units, chargers), site status and
its online/offline history, gateway events, outage reports and the aggregates kept per site at
1 minute, 15 minutes and 1 hour."""

from django.db import models
from django.db.models import Q

from enexa.registry.models import Site

from .choices import Severity, TransitionReason

# The site-level values every reading stores as columns; aggregation and the hourly roll-up
# are generated from this list so the three never disagree.
METRICS = (
    "battery_soc_pct",
    "battery_power_kw",
    "grid_import_kw",
    "grid_export_kw",
    "chargers_power_kw",
)


class TelemetryReading(models.Model):
    """One reading of a site at one moment; a row per (site, message_id or timestamp).

    Rows are read by time range per site: a btree on (site, timestamp) serves the reads. On
    PostgreSQL the table is partitioned by day on `timestamp` (enexa.telemetry.partitions), so
    retention drops whole days; its key is then (id, timestamp) and the uniqueness of
    (site, message_id) holds within each day's partition (docs/telemetry.md)."""

    id = models.BigAutoField(primary_key=True)
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+", db_index=False)
    timestamp = models.DateTimeField()
    # NULL, not "", when absent: the partial unique constraints below tell the two cases apart.
    message_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    received_at = models.DateTimeField()
    # Sent from the gateway's outbox after an outage rather than live.
    backfilled = models.BooleanField(default=False)
    battery_soc_pct = models.FloatField(null=True, blank=True)
    battery_power_kw = models.FloatField(null=True, blank=True)  # + discharge, - charge
    grid_import_kw = models.FloatField(null=True, blank=True)
    grid_export_kw = models.FloatField(null=True, blank=True)
    grid_frequency_hz = models.FloatField(null=True, blank=True)
    grid_voltage_v = models.FloatField(null=True, blank=True)
    # The grid meter's cumulative counters: energy per period is their increase
    # (enexa.telemetry.energy), a drop being the meter's reset.
    grid_import_energy_kwh = models.FloatField(null=True, blank=True)
    grid_export_energy_kwh = models.FloatField(null=True, blank=True)
    # Sum of the chargers' power in this reading (None when no charger reported).
    chargers_power_kw = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["site", "message_id"],
                condition=Q(message_id__isnull=False),
                name="telemetry_unique_site_message_id",
            ),
            models.UniqueConstraint(
                fields=["site", "timestamp"],
                condition=Q(message_id__isnull=True),
                name="telemetry_unique_site_timestamp",
            ),
        ]
        indexes = [models.Index(fields=["site", "timestamp"], name="telemetry_site_ts")]

    def __str__(self) -> str:
        return f"{self.site_id} @ {self.timestamp.isoformat()}"


class BatteryUnitValue(models.Model):
    """One battery unit's values within a reading."""

    id = models.BigAutoField(primary_key=True)
    # No foreign key in the database: on PostgreSQL a key into the partitioned readings would
    # have to carry their partition key too. Rows are only written by the statement that
    # inserts their reading, and dropped with its day (docs/telemetry.md).
    reading = models.ForeignKey(
        TelemetryReading,
        on_delete=models.CASCADE,
        related_name="units",
        db_index=False,
        db_constraint=False,
    )
    # The reading's timestamp, copied: the partition key of this table on PostgreSQL.
    timestamp = models.DateTimeField()
    unit_code = models.CharField(max_length=32)
    soc_pct = models.FloatField(null=True, blank=True)
    power_kw = models.FloatField(null=True, blank=True)
    soh_pct = models.FloatField(null=True, blank=True)
    temperature_c = models.FloatField(null=True, blank=True)
    allowed_charge_kw = models.FloatField(null=True, blank=True)
    allowed_discharge_kw = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["reading", "unit_code"], name="unique_unit_per_reading")
        ]

    def __str__(self) -> str:
        return f"{self.unit_code} of reading {self.reading_id}"


class ChargerValue(models.Model):
    """One charger's values within a reading."""

    id = models.BigAutoField(primary_key=True)
    # No foreign key in the database: on PostgreSQL a key into the partitioned readings would
    # have to carry their partition key too. Rows are only written by the statement that
    # inserts their reading, and dropped with its day (docs/telemetry.md).
    reading = models.ForeignKey(
        TelemetryReading,
        on_delete=models.CASCADE,
        related_name="chargers",
        db_index=False,
        db_constraint=False,
    )
    # The reading's timestamp, copied: the partition key of this table on PostgreSQL.
    timestamp = models.DateTimeField()
    charger_code = models.CharField(max_length=32)
    power_kw = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=16, blank=True)
    energy_kwh = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["reading", "charger_code"], name="unique_charger_per_reading"
            )
        ]

    def __str__(self) -> str:
        return f"{self.charger_code} of reading {self.reading_id}"


class SiteStatus(models.Model):
    """The latest known state of a site's gateway; one row per site."""

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="status")
    online = models.BooleanField(default=False)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # The gateway's own timestamp of the newest status report applied (older ones are ignored).
    reported_at = models.DateTimeField(null=True, blank=True)
    controller_code = models.CharField(max_length=32, blank=True)
    mode = models.CharField(max_length=16, blank=True)
    # What the newest status report said, not copies: the per-controller
    # ConfigState.applied_version and Controller.firmware_version take these values only when
    # the report names a controller, and firmware reports also move the latter.
    config_version = models.PositiveIntegerField(null=True, blank=True)
    firmware_version = models.CharField(max_length=40, blank=True)
    modbus_link_up = models.BooleanField(null=True, blank=True)
    buffer_depth = models.PositiveIntegerField(null=True, blank=True)
    # The site's gateway as Amperio's `GET /v1/health` last said (polled by the worker, see
    # reports.gateway_health_summary): flat keys `status` (ok, degraded, not_reported),
    # `modbus_link_up`, `watchdog_beating`, `mode`, `autonomy`, `buffer_depth`,
    # `unconfirmed_commands`, `last_report_at`, `last_report_age_s`, `at`; queried as
    # `gateway_health__modbus_link_up=False`. `gateway_health_at` is when it was polled.
    gateway_health = models.JSONField(null=True, blank=True)
    gateway_health_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "site statuses"

    def __str__(self) -> str:
        return f"{self.site_id} {'online' if self.online else 'offline'}"


class SiteStatusTransition(models.Model):
    """One online/offline transition of a site, kept for history."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="status_transitions")
    online = models.BooleanField()
    at = models.DateTimeField()
    reason = models.CharField(max_length=16, choices=TransitionReason.choices)

    class Meta:
        ordering = ["site", "at"]
        indexes = [models.Index(fields=["site", "at"], name="transition_site_at")]

    def __str__(self) -> str:
        return f"{self.site_id} {'online' if self.online else 'offline'} at {self.at}"


class Event(models.Model):
    """A gateway event (alarm, mode change, buffered log line); stored once per event_id."""

    id = models.BigAutoField(primary_key=True)
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+", db_index=False)
    event_id = models.CharField(max_length=64)
    timestamp = models.DateTimeField()
    received_at = models.DateTimeField()
    kind = models.CharField(max_length=16)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.INFO)
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "event_id"], name="unique_event_per_site")
        ]
        indexes = [models.Index(fields=["site", "timestamp"], name="event_site_ts")]

    def __str__(self) -> str:
        return f"{self.kind} {self.event_id} @ {self.site_id}"


class OutageReport(models.Model):
    """What one outage of a site cost in readings, and what the gateway backfilled since.

    The window is (`silent_since`, `online_at`): from the newest reading before the silence to
    the first contact after it."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="outages")
    silent_since = models.DateTimeField()
    offline_at = models.DateTimeField()
    online_at = models.DateTimeField(null=True, blank=True)
    interval_s = models.FloatField()
    readings_expected = models.PositiveIntegerField(default=0)
    readings_received = models.PositiveIntegerField(default=0)
    readings_backfilled = models.PositiveIntegerField(default=0)
    # [{"start", "expected", "received"}] per bucket of the window.
    buckets = models.JSONField(default=list, blank=True)
    # [{"from", "to", "count"}] contiguous stretches of backfilled readings.
    backfilled_ranges = models.JSONField(default=list, blank=True)
    # [{"from", "to", "missing"}] stretches still without readings.
    gaps = models.JSONField(default=list, blank=True)
    commands_redelivered = models.JSONField(default=dict, blank=True)
    # What Amperio said when the site came back: {"health", "commands": {"refreshed",
    # "finished", "still_open"}} (enexa.dispatch.services.sync_from_amperio).
    state_sync = models.JSONField(default=dict, blank=True)
    reconciled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["site", "-offline_at"]

    def __str__(self) -> str:
        return f"outage of {self.site_id} from {self.silent_since}"


class TelemetryAggregate(models.Model):
    """One site's readings of one bucket (1 min, 15 min or 1 h) rolled up: the count, and per
    metric its sum and number of values (avg = sum / n), min, max and last value.

    Kept up to date from StaleMinute by enexa.telemetry.aggregates; hourly buckets outlive the
    raw readings (ENEXA_TELEMETRY_AGGREGATE_RETENTION_DAYS)."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+", db_index=False)
    resolution_s = models.PositiveIntegerField()
    bucket_at = models.DateTimeField()
    count = models.PositiveIntegerField()
    # The timestamp of the bucket's newest reading: which sub-bucket's `last` wins a roll-up.
    last_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["site", "resolution_s", "bucket_at"], name="unique_telemetry_aggregate"
            )
        ]
        # Retention deletes by resolution and age across all sites.
        indexes = [models.Index(fields=["resolution_s", "bucket_at"], name="telemetry_agg_res_at")]

    def __str__(self) -> str:
        return f"{self.site_id} {self.resolution_s} s @ {self.bucket_at}"


# The statistics columns of TelemetryAggregate, generated from METRICS so a metric added there
# gets its aggregate columns (after makemigrations) without a second list to keep in step.
AGGREGATE_STATS = ("sum", "n", "min", "max", "last")
for _metric in METRICS:
    for _stat in AGGREGATE_STATS:
        _field = (
            models.PositiveIntegerField(default=0) if _stat == "n" else models.FloatField(null=True)
        )
        TelemetryAggregate.add_to_class(f"{_metric}_{_stat}", _field)


class StaleMinute(models.Model):
    """A minute of a site that got readings since its aggregates were last computed: written
    by ingest in the same statement as the readings, consumed by refresh_aggregates."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+", db_index=False)
    minute_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "minute_at"], name="unique_stale_minute")
        ]

    def __str__(self) -> str:
        return f"{self.site_id} @ {self.minute_at}"


class HourlyEnergy(models.Model):
    """One site's energy in one UTC hour, computed from raw readings before retention prunes
    them (enexa.telemetry.energy): energy reports reach back past raw retention."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+", db_index=False)
    hour = models.DateTimeField()
    grid_import_kwh = models.FloatField(null=True)
    grid_export_kwh = models.FloatField(null=True)
    battery_charged_kwh = models.FloatField(null=True)
    battery_discharged_kwh = models.FloatField(null=True)
    chargers_kwh = models.FloatField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "hour"], name="unique_hourly_energy")
        ]

    def __str__(self) -> str:
        return f"{self.site_id} {self.hour}"

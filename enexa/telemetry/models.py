"""Stored telemetry readings (site-level columns, battery units, chargers), site status and
its online/offline history, gateway events, outage reports and hourly aggregates."""

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

    Rows arrive in time order and are read by time range per site: a btree on
    (site, timestamp) serves the reads, and on PostgreSQL a BRIN index on timestamp (tiny for
    append-only data) serves retention and cross-site scans."""

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
    reading = models.ForeignKey(
        TelemetryReading, on_delete=models.CASCADE, related_name="units", db_index=False
    )
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
    reading = models.ForeignKey(
        TelemetryReading, on_delete=models.CASCADE, related_name="chargers", db_index=False
    )
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


class HourlyAggregate(models.Model):
    """Raw readings of one site and hour rolled up (avg/min/max/last), kept past raw retention."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+", db_index=False)
    hour = models.DateTimeField()
    count = models.PositiveIntegerField()
    battery_soc_pct_avg = models.FloatField(null=True)
    battery_soc_pct_min = models.FloatField(null=True)
    battery_soc_pct_max = models.FloatField(null=True)
    battery_soc_pct_last = models.FloatField(null=True)
    battery_power_kw_avg = models.FloatField(null=True)
    battery_power_kw_min = models.FloatField(null=True)
    battery_power_kw_max = models.FloatField(null=True)
    battery_power_kw_last = models.FloatField(null=True)
    grid_import_kw_avg = models.FloatField(null=True)
    grid_import_kw_min = models.FloatField(null=True)
    grid_import_kw_max = models.FloatField(null=True)
    grid_import_kw_last = models.FloatField(null=True)
    grid_export_kw_avg = models.FloatField(null=True)
    grid_export_kw_min = models.FloatField(null=True)
    grid_export_kw_max = models.FloatField(null=True)
    grid_export_kw_last = models.FloatField(null=True)
    chargers_power_kw_avg = models.FloatField(null=True)
    chargers_power_kw_min = models.FloatField(null=True)
    chargers_power_kw_max = models.FloatField(null=True)
    chargers_power_kw_last = models.FloatField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "hour"], name="unique_hourly_aggregate")
        ]

    def __str__(self) -> str:
        return f"{self.site_id} {self.hour}"

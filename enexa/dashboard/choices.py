"""Enumerations of the dashboard: chart ranges, and how the fleet sorts and filters."""

from django.db import models


class ChartRange(models.TextChoices):
    HOUR = "hour", "Hour"
    DAY = "day", "Day"
    WEEK = "week", "Week"


# (span, bucket) in seconds per range: at most 2,000 points each (61, 1,441 and 673 buckets
# overlap the span). Buckets are telemetry's maintained aggregates (1 min, 15 min), so each
# is a whole multiple of a minute.
CHART_RANGES = {
    ChartRange.HOUR: (3600, 60),
    ChartRange.DAY: (86400, 60),
    ChartRange.WEEK: (7 * 86400, 900),
}


class FleetSort(models.TextChoices):
    CODE = "code", "Site"
    PROBLEMS = "problems", "Problems first"
    STATUS = "status", "Offline first"
    SOC = "soc", "SOC (lowest first)"
    GRID = "grid", "Grid use (highest first)"


class FleetStatus(models.TextChoices):
    ALL = "", "All"
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"
    PROBLEMS = "problems", "With problems"

"""Enumerations of the asset registry."""

from django.db import models


class MemberRole(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    OPERATOR = "operator", "Operator"


class ControllerState(models.TextChoices):
    # Pre-registered by staff, waiting for the gateway's registration call.
    PENDING = "pending", "Pending"
    REGISTERED = "registered", "Registered"
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    DECOMMISSIONED = "decommissioned", "Decommissioned"


class EquipmentKind(models.TextChoices):
    BATTERY_SYSTEM = "battery_system", "Battery system"
    BATTERY_UNIT = "battery_unit", "Battery unit"
    CHARGER = "charger", "Charger"
    METER = "meter", "Meter"


class ConnectorType(models.TextChoices):
    CCS2 = "CCS2", "CCS2"
    CCS1 = "CCS1", "CCS1"
    CHADEMO = "CHAdeMO", "CHAdeMO"
    NACS = "NACS", "NACS"
    TYPE2 = "Type2", "Type 2"

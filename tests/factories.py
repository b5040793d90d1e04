"""factory-boy factories for every model the tests build, kept in one place."""

from collections.abc import Iterable
from datetime import datetime

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from enexa.registry.choices import ControllerState, EquipmentKind, MemberRole
from enexa.registry.models import Controller, Equipment, Site, SiteMembership
from enexa.telemetry.models import TelemetryReading
from enexa.telemetry.storage import store_readings
from shared.telemetry import BatteryReading, ChargerReading, GridReading
from shared.telemetry import TelemetryReading as ReadingSchema


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):  # noqa: N805 - factory-boy hook
        if create:
            obj.save()


class StaffFactory(UserFactory):
    is_staff = True


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Site

    code = factory.Sequence(lambda n: f"SITE{n + 100:03d}")
    name = factory.Sequence(lambda n: f"Charging hub {n}")
    timezone = "Europe/Berlin"
    grid_connection_limit_kw = 400.0


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SiteMembership

    user = factory.SubFactory(UserFactory)
    site = factory.SubFactory(SiteFactory)
    role = MemberRole.OPERATOR


class EquipmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Equipment

    code = factory.Sequence(lambda n: f"EQ{n + 100}")
    site = factory.SubFactory(SiteFactory)
    kind = EquipmentKind.METER
    max_power_kw = 500.0


class BatterySystemFactory(EquipmentFactory):
    code = factory.Sequence(lambda n: f"BESS{n + 100}")
    kind = EquipmentKind.BATTERY_SYSTEM
    capacity_kwh = 280.0
    max_power_kw = 220.0
    max_charge_kw = 220.0
    max_discharge_kw = 220.0
    soc_min_pct = 5.0
    soc_max_pct = 95.0


class BatteryUnitFactory(EquipmentFactory):
    code = factory.Sequence(lambda n: f"BAT{n + 100}")
    kind = EquipmentKind.BATTERY_UNIT
    parent = factory.SubFactory(BatterySystemFactory, site=factory.SelfAttribute("..site"))
    capacity_kwh = 140.0
    max_power_kw = 110.0
    max_charge_kw = 110.0
    max_discharge_kw = 110.0
    soc_min_pct = 5.0
    soc_max_pct = 95.0


class ChargerFactory(EquipmentFactory):
    code = factory.Sequence(lambda n: f"CHG{n + 100}")
    kind = EquipmentKind.CHARGER
    max_power_kw = 300.0
    connector_types = ["CCS2"]
    connector_count = 2


class ControllerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Controller

    code = factory.Sequence(lambda n: f"CTRL{n + 100:03d}")
    serial = factory.Sequence(lambda n: f"AGW-{n + 100:06d}")
    site = factory.SubFactory(SiteFactory)
    state = ControllerState.ACTIVE


class FirmwareReleaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "firmware.FirmwareRelease"
        skip_postgeneration_save = True

    version = factory.Sequence(lambda n: f"1.0.{n}")
    controller_model = "Amperio-GW"
    url = factory.LazyAttribute(lambda r: f"https://downloads.example.com/amperio-{r.version}.bin")
    sha256 = factory.Sequence(lambda n: f"{n:064x}")
    size_bytes = 12_345_678
    channel = "stable"
    published = True

    @factory.post_generation
    def target_sites(obj, create, extracted, **kwargs):  # noqa: N805 - factory-boy hook
        if create and extracted:
            obj.target_sites.set(extracted)


class SiteStatusFactory(factory.django.DjangoModelFactory):
    """A site's gateway status (enexa.telemetry): online and just heard from by default."""

    class Meta:
        model = "telemetry.SiteStatus"

    site = factory.SubFactory(SiteFactory)
    online = True
    last_seen_at = factory.LazyFunction(timezone.now)


def _reading_schema(site: Site, at: datetime, values: dict) -> ReadingSchema:
    soc, battery_kw = values.pop("battery_soc_pct", None), values.pop("battery_power_kw", None)
    grid = GridReading(
        import_kw=values.pop("grid_import_kw", None), export_kw=values.pop("grid_export_kw", None)
    )
    chargers = tuple(
        ChargerReading(id=code, status=status, power_kw=kw)
        for code, status, kw in values.pop("chargers", ())
    )
    if values:
        raise TypeError(f"unknown reading values: {sorted(values)}")
    return ReadingSchema(
        site_id=site.code,
        timestamp=at,
        message_id=None,
        battery=BatteryReading(soc, battery_kw)
        if soc is not None or battery_kw is not None
        else None,
        grid=grid if grid.import_kw is not None or grid.export_kw is not None else None,
        chargers=chargers,
    )


def add_readings(
    site: Site, readings: Iterable[tuple[datetime, dict]], *, received_at: datetime | None = None
) -> int:
    """Store readings of `site` as ingest does, in one batch (enexa.telemetry.storage's
    store_readings: the same statement marks their minutes stale, so the aggregates count them
    as in production). Each is (timestamp, values), values named as the reading's columns
    (`battery_soc_pct`, `battery_power_kw`, `grid_import_kw`, `grid_export_kw`) and `chargers`
    as (code, status, power_kw) tuples, whose sum is the reading's `chargers_power_kw`.
    Received at `received_at` (default now). Returns how many were new."""
    valid = [
        (i, _reading_schema(site, at, dict(values)), site.pk)
        for i, (at, values) in enumerate(readings)
    ]
    return len(store_readings(valid, received_at or timezone.now())) if valid else 0


def add_reading(site: Site, at: datetime, **values) -> TelemetryReading:
    """One reading stored as ingest does (see add_readings); returns its row."""
    add_readings(site, [(at, values)], received_at=at)
    return TelemetryReading.objects.get(site=site, timestamp=at)

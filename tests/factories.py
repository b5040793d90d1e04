"""factory-boy factories for every model the tests build, kept in one place."""

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from enexa.registry.choices import ControllerState, EquipmentKind, MemberRole
from enexa.registry.models import Controller, Equipment, Site, SiteMembership


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

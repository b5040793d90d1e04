"""`manage.py seed_demo`: the demo site SITE001 with its ChargePost, controller and users.

Idempotent: what exists is left as it is, so running it twice changes nothing. Passwords come
from ENEXA_DEMO_ADMIN_PASSWORD / ENEXA_DEMO_OPERATOR_PASSWORD; a user created without one gets a
random password, printed once."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from enexa.registry.choices import ConnectorType, ControllerState, EquipmentKind, MemberRole
from enexa.registry.models import Controller, Equipment, Site, SiteMembership

SITE = {
    "code": "SITE001",
    "name": "Demo ultrafast hub",
    "timezone": "Europe/Berlin",
    "address": "Heinrich-Hertz-Str. 1, 72622 Nürtingen",
    "latitude": 48.6267,
    "longitude": 9.3353,
    "grid_connection_limit_kw": 400.0,
}
BATTERY_LIMITS = {"soc_min_pct": 5.0, "soc_max_pct": 95.0, "voltage_v": 800.0}
# A ChargePost: two 110 kW battery units (100 kWh each) behind one 300 kW dispenser.
EQUIPMENT = [
    {
        "code": "BESS1",
        "kind": EquipmentKind.BATTERY_SYSTEM,
        "name": "ChargePost battery",
        "model": "ChargePost",
        "capacity_kwh": 200.0,
        "max_power_kw": 220.0,
        "max_charge_kw": 220.0,
        "max_discharge_kw": 220.0,
        **BATTERY_LIMITS,
    },
    {
        "code": "BAT1",
        "kind": EquipmentKind.BATTERY_UNIT,
        "parent": "BESS1",
        "name": "Battery unit 1",
        "model": "ChargePost battery unit",
        "capacity_kwh": 100.0,
        "max_power_kw": 110.0,
        "max_charge_kw": 110.0,
        "max_discharge_kw": 110.0,
        **BATTERY_LIMITS,
    },
    {
        "code": "BAT2",
        "kind": EquipmentKind.BATTERY_UNIT,
        "parent": "BESS1",
        "name": "Battery unit 2",
        "model": "ChargePost battery unit",
        "capacity_kwh": 100.0,
        "max_power_kw": 110.0,
        "max_charge_kw": 110.0,
        "max_discharge_kw": 110.0,
        **BATTERY_LIMITS,
    },
    {
        "code": "CHG1",
        "kind": EquipmentKind.CHARGER,
        "name": "Dispenser 1",
        "model": "ChargePost dispenser",
        "max_power_kw": 300.0,
        "voltage_v": 920.0,
        "connector_types": [ConnectorType.CCS2.value],
        "connector_count": 2,
    },
    {
        "code": "MTR1",
        "kind": EquipmentKind.METER,
        "name": "Grid meter",
        "manufacturer": "Janitza",
        "model": "UMG 604-PRO",
        "max_power_kw": 400.0,
        "voltage_v": 400.0,
        "phases": 3,
    },
]
CONTROLLER = {
    "code": "CTRL001",
    "serial": "CP-DEMO-0001",
    "model": "ChargePost",
    "state": ControllerState.REGISTERED,
}
CONTROLLER_ASSETS = ["BESS1", "BAT1", "BAT2", "CHG1", "MTR1"]


class Command(BaseCommand):
    help = "Create the demo site SITE001 with its equipment, controller CTRL001 and demo users."

    def handle(self, *args, **options):
        with transaction.atomic():
            site = self.seed_site()
            self.seed_users(site)
        self.stdout.write(
            self.style.SUCCESS("Demo data ready: SITE001, CTRL001, users admin and operator.")
        )

    def seed_site(self) -> Site:
        site, _ = Site.objects.get_or_create(code=SITE["code"], defaults=SITE)
        for spec in EQUIPMENT:
            fields = dict(spec)
            code = fields.pop("code")
            if "parent" in fields:
                fields["parent"] = Equipment.objects.get(code=fields["parent"])
            if not Equipment.objects.filter(code=code).exists():
                equipment = Equipment(code=code, site=site, **fields)
                equipment.full_clean()
                equipment.save()
        controller = Controller.objects.filter(code=CONTROLLER["code"]).first()
        if controller is None:
            controller = Controller(site=site, **CONTROLLER)
            controller.full_clean()
            controller.save()
            controller.assets.set(Equipment.objects.filter(code__in=CONTROLLER_ASSETS))
        return site

    def seed_users(self, site: Site) -> None:
        self.seed_user("admin", "ENEXA_DEMO_ADMIN_PASSWORD", is_staff=True, is_superuser=True)
        operator = self.seed_user("operator", "ENEXA_DEMO_OPERATOR_PASSWORD")
        SiteMembership.objects.get_or_create(
            user=operator, site=site, defaults={"role": MemberRole.OPERATOR}
        )

    def seed_user(self, username: str, password_env: str, **flags):
        """Create the user if missing; an explicit password from the environment wins over the
        stored one, a generated one is only ever made (and shown) for a new user."""
        users = get_user_model()
        password = os.environ.get(password_env, "")
        user = users.objects.filter(username=username).first()
        if user is None:
            shown = not password
            password = password or secrets.token_urlsafe(12)
            user = users(username=username, email=f"{username}@demo.enexa.invalid", **flags)
            user.set_password(password)
            user.save()
            if shown:
                self.stdout.write(
                    f"Created user {username!r} with password {password!r} "
                    f"(set {password_env} to choose it)."
                )
        elif password and not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
        return user

"""Fixtures shared by the Enexa tests (the project-wide ones are in tests/conftest.py)."""

import pytest

from enexa.telemetry import services as telemetry_services
from tests.factories import BatterySystemFactory, BatteryUnitFactory, ChargerFactory


@pytest.fixture(autouse=True)
def _fresh_site_cache():
    """No test sees site ratings or last-seen times another cached in this process."""
    telemetry_services.clear_caches()
    yield
    telemetry_services.clear_caches()


@pytest.fixture
def equipped_site(site):
    """SITE001 as in the demo: a 220 kW battery of two 110 kW units and a 300 kW charger
    (grid 400 kW)."""
    system = BatterySystemFactory(site=site, code="BESS1")
    BatteryUnitFactory(site=site, code="BAT1", parent=system)
    BatteryUnitFactory(site=site, code="BAT2", parent=system)
    ChargerFactory(site=site, code="CHG1", max_power_kw=300.0)
    return site


class Enqueued(list):
    """Tasks enqueued during a test, as (task, args, kwargs), never sent to a broker."""

    def run_all(self) -> None:
        """Run each enqueued task's body, as the worker would (no eager Celery: one
        integration test runs a real worker); a task's own retry request ends its run."""
        from celery.exceptions import Retry

        while self:
            task, args, kwargs = self.pop(0)
            try:
                task.run(*args, **kwargs)
            except Retry:
                pass


@pytest.fixture
def enqueued(monkeypatch, django_capture_on_commit_callbacks):
    """Every `delay`/`apply_async` (also those run on commit) recorded instead of sent; the
    test's transaction commits at the end of the `with` it wraps around the request."""
    from celery import Task

    spy = Enqueued()

    def apply_async(self, args=None, kwargs=None, **options):
        spy.append((self, tuple(args or ()), dict(kwargs or {})))

    monkeypatch.setattr(Task, "apply_async", apply_async)
    spy.committing = django_capture_on_commit_callbacks
    return spy

"""The per-process cache of the API-key lookup (enexa.provisioning.keycache): used when Redis is
configured, and dropped by every kind of write to what the lookup returns, however made."""

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from enexa.audit.models import AuditEntry
from enexa.core.errors import ForbiddenError
from enexa.provisioning import keycache, services
from enexa.provisioning.models import ApiKey, ControllerAccess
from enexa.registry.choices import ControllerState
from enexa.registry.models import Controller, Site
from shared.fields import format_timestamp
from tests.factories import ControllerFactory, SiteFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def lookups(monkeypatch):
    """Counts the lookups that reach the database."""
    calls = []
    real = services.run_prepared

    def counting(sql, params, **kwargs):
        if sql == services._key_lookup_sql():
            calls.append(params[0])
        return real(sql, params, **kwargs)

    monkeypatch.setattr(services, "run_prepared", counting)
    return calls


@pytest.fixture
def cache_on(redis_url):
    keycache.clear()
    with override_settings(REDIS_URL=redis_url):
        yield
    keycache.clear()


@pytest.fixture
def key(cache_on):
    """(controller, plaintext) of an active controller whose key this process has cached."""
    controller = ControllerFactory(state=ControllerState.ACTIVE)
    _, plaintext = services.issue_api_key(controller)
    assert services.authenticate_api_key(plaintext) is not None
    return controller, plaintext


def test_a_key_served_again_is_not_looked_up_in_the_database_again(key, lookups):
    _, plaintext = key
    for _ in range(3):
        assert services.authenticate_api_key(plaintext) is not None
    assert lookups == []


def test_a_wrong_secret_is_refused_even_when_the_key_is_cached(key):
    _, plaintext = key
    assert services.authenticate_api_key(plaintext[:-2] + "xx") is None


@pytest.mark.parametrize(
    "redis_setting", ["", "redis://127.0.0.1:1/0"], ids=["no Redis", "Redis unreachable"]
)
def test_without_a_reachable_redis_every_call_reads_the_database(lookups, redis_setting):
    _, plaintext = services.issue_api_key(ControllerFactory(state=ControllerState.ACTIVE))
    with override_settings(REDIS_URL=redis_setting):
        for _ in range(3):
            assert services.authenticate_api_key(plaintext) is not None
    assert len(lookups) == 3


def test_a_generation_moved_on_by_another_process_makes_this_one_read_again(
    key, redis_url, lookups
):
    _, plaintext = key
    keycache._redis(redis_url).set(keycache.generation_key(), "moved-by-another-process")
    assert services.authenticate_api_key(plaintext) is not None
    assert len(lookups) == 1


def test_revoking_through_the_service_refuses_the_cached_key_at_once(key):
    controller, plaintext = key
    services.revoke_api_keys(controller)
    assert services.authenticate_api_key(plaintext) is None


def test_rotation_keeps_the_old_key_for_its_grace_and_the_new_one_works_at_once(key):
    controller, plaintext = key
    new_key, _ = services.rotate_api_key(controller, grace_s=3600)
    assert services.authenticate_api_key(plaintext) is not None
    assert services.authenticate_api_key(new_key) is not None


def test_rotation_without_grace_refuses_the_cached_old_key_at_once(key):
    controller, plaintext = key
    new_key, _ = services.rotate_api_key(controller, grace_s=0)
    assert services.authenticate_api_key(plaintext) is None
    assert services.authenticate_api_key(new_key) is not None


def test_a_grace_period_ending_refuses_the_cached_key_without_any_write(key, lookups):
    controller, plaintext = key
    services.rotate_api_key(controller, grace_s=3600)
    assert services.authenticate_api_key(plaintext) is not None  # cached with its deadline
    later = timezone.now() + timezone.timedelta(seconds=3601)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services.timezone, "now", lambda: later)
        assert services.authenticate_api_key(plaintext) is None
    assert len(lookups) == 1


@pytest.mark.parametrize("state", [ControllerState.SUSPENDED, ControllerState.DECOMMISSIONED])
def test_suspending_or_decommissioning_refuses_the_cached_key_at_once(key, state):
    controller, plaintext = key
    services.set_controller_state(controller, state)
    assert services.authenticate_api_key(plaintext) is None


def test_a_state_changed_by_a_queryset_update_refuses_the_cached_key_at_once(key):
    controller, plaintext = key
    Controller.objects.filter(pk=controller.pk).update(state=ControllerState.SUSPENDED)
    assert services.authenticate_api_key(plaintext) is None


def test_a_key_deleted_is_refused_at_once(key):
    controller, plaintext = key
    ApiKey.objects.filter(controller=controller).delete()
    assert services.authenticate_api_key(plaintext) is None


def test_a_revocation_in_raw_sql_through_django_is_seen_at_once(key):
    controller, plaintext = key
    with connection.cursor() as cursor:
        cursor.execute(
            "update provisioning_apikey set revoked_at = %s where controller_id = %s",
            [timezone.now(), controller.pk],
        )
    assert services.authenticate_api_key(plaintext) is None


def test_an_allowlist_set_after_caching_refuses_other_addresses_at_once(key):
    controller, plaintext = key
    assert services.authenticate_api_key(plaintext, client_ip="192.0.2.7") is not None
    services.set_ip_allowlist(controller, ["10.0.0.0/8"])
    with pytest.raises(ForbiddenError):
        services.authenticate_api_key(plaintext, client_ip="192.0.2.7")
    ControllerAccess.objects.filter(controller=controller).update(ip_allowlist=[])
    assert services.authenticate_api_key(plaintext, client_ip="192.0.2.7") is not None


def test_a_site_renamed_or_a_controller_moved_shows_in_the_principal_at_once(key):
    controller, plaintext = key
    site = controller.site
    site.code = "RENAMED1"
    site.save()
    assert services.authenticate_api_key(plaintext).site_code == "RENAMED1"
    other = SiteFactory()
    Controller.objects.filter(pk=controller.pk).update(site=other)
    assert services.authenticate_api_key(plaintext).site_pk == other.pk
    Site.objects.filter(pk=other.pk).update(code="MOVED1")
    assert services.authenticate_api_key(plaintext).site_code == "MOVED1"


def test_revoking_in_the_admin_refuses_the_cached_key_at_once(key, admin_client):
    controller, plaintext = key
    response = admin_client.post(
        "/admin/provisioning/apikey/",
        {
            "action": "revoke",
            "_selected_action": list(
                ApiKey.objects.filter(controller=controller).values_list("pk", flat=True)
            ),
        },
    )
    assert response.status_code == 302
    assert services.authenticate_api_key(plaintext) is None


def test_recording_a_keys_last_use_keeps_every_process_cache(key, redis_url, lookups):
    _, plaintext = key
    ApiKey.objects.update(last_used_at=None)  # a write: the generation moves on here
    generation = keycache._redis(redis_url).get(keycache.generation_key())
    assert services.authenticate_api_key(plaintext) is not None  # reads, then writes last use
    assert keycache._redis(redis_url).get(keycache.generation_key()) == generation
    assert services.authenticate_api_key(plaintext) is not None
    assert len(lookups) == 1


def test_a_revocation_moves_the_generation_every_process_checks_on(key, redis_url):
    controller, _ = key
    before = keycache._redis(redis_url).get(keycache.generation_key())
    services.revoke_api_keys(controller)
    assert keycache._redis(redis_url).get(keycache.generation_key()) != before


def test_a_status_report_that_changes_no_controller_row_keeps_the_cache(key, redis_url):
    controller, _ = key
    Controller.objects.filter(pk=controller.pk).update(firmware_version="1.2.3")
    before = keycache._redis(redis_url).get(keycache.generation_key())
    Controller.objects.filter(pk=controller.pk).exclude(firmware_version="1.2.3").update(
        firmware_version="1.2.3"
    )
    assert keycache._redis(redis_url).get(keycache.generation_key()) == before


def test_posts_with_a_cached_key_are_audited_when_served_and_when_refused(key, site):
    controller, plaintext = key
    controller.site = site
    controller.save()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    reading = {"site_id": site.code, "timestamp": format_timestamp(timezone.now())}
    assert client.post("/v1/telemetry", reading, format="json").status_code == 201
    services.revoke_api_keys(controller)
    assert client.post("/v1/telemetry", reading, format="json").status_code == 401
    audited = list(
        AuditEntry.objects.filter(path="/v1/telemetry")
        .order_by("pk")
        .values_list("status_code", "principal")
    )
    assert [status for status, _ in audited] == [201, 401]
    assert audited[0][1].startswith("controller:")


def test_a_revocation_written_as_a_composed_statement_is_seen_at_once(key):
    if connection.vendor != "postgresql":
        pytest.skip("psycopg's composed statements are PostgreSQL's")
    from psycopg import sql

    controller, plaintext = key
    statement = sql.SQL("UPDATE {} SET revoked_at = now() WHERE controller_id = %s").format(
        sql.Identifier("provisioning_apikey")
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, [controller.pk])
    assert services.authenticate_api_key(plaintext) is None

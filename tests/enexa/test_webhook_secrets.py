"""Webhook signing secrets at rest: the database (and a dump of it) holds only a Fernet token
under ENEXA_SECRETS_KEY; deliveries still verify with the `standardwebhooks` library, also
after the key is rotated; a secret no key decrypts makes a dead letter with its reason, never
a crash or a leak; the migration encrypts existing rows and its reverse decrypts them."""

import io
import logging

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings
from standardwebhooks.webhooks import Webhook as StandardWebhook

from enexa.core import encryption
from enexa.webhooks import services
from enexa.webhooks.models import Webhook, WebhookDelivery
from tests.factories import UserFactory
from tests.httppeer import HttpPeer

pytestmark = pytest.mark.django_db

OLD_KEY, NEW_KEY = Fernet.generate_key().decode(), Fernet.generate_key().decode()
loopback_allowed = override_settings(ENEXA_WEBHOOK_ALLOW_PRIVATE=True)


def keys(*listed: str):
    return override_settings(ENEXA_SECRETS_KEYS=list(listed))


def stored_secret(webhook: Webhook) -> str:
    """The column as the database holds it, read with SQL (not through the model)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT encrypted_secret FROM webhooks_webhook WHERE id = %s", [webhook.pk])
        return cursor.fetchone()[0]


def accept(method, path, headers, body):
    return 204, {}


@loopback_allowed
def test_the_database_and_a_dump_of_it_hold_no_plaintext_secret(operator_client):
    response = operator_client.post(
        "/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["site.online"]}, format="json"
    )
    assert response.status_code == 201, response.content
    secret = response.json()["secret"]
    webhook = Webhook.objects.get(code=response.json()["id"])
    column = stored_secret(webhook)
    dump = io.StringIO()
    call_command("dumpdata", "webhooks", stdout=dump)
    key_material = secret.removeprefix(services.SECRET_PREFIX)
    for text in (column, dump.getvalue()):
        assert key_material not in text and services.SECRET_PREFIX not in text
    # Only the configured key opens it.
    assert encryption.decrypt(column) == secret
    with keys(Fernet.generate_key().decode()), pytest.raises(encryption.UndecryptableSecret):
        encryption.decrypt(column)


@loopback_allowed
def test_after_a_key_rotation_deliveries_verify_under_the_new_key_alone(site, operator):
    with HttpPeer(accept) as peer:
        with keys(OLD_KEY):
            webhook, secret = services.create_webhook(
                owner=operator, url=peer.url, events=["site.online"], site_codes=None
            )
        before = stored_secret(webhook)
        with keys(NEW_KEY, OLD_KEY):
            assert services.reencrypt_secrets() == (1, [])
        after = stored_secret(webhook)
        assert after != before and secret not in after
        with keys(NEW_KEY):  # the old key removed
            [code] = services.publish("site.online", site, {"site_id": site.code})
            assert services.send_delivery(code, 0) == "succeeded"
        with keys(OLD_KEY), pytest.raises(encryption.UndecryptableSecret):
            encryption.decrypt(after)
        [received] = peer.requests
    payload = StandardWebhook(secret).verify(received["raw"], received["headers"])
    assert payload["data"] == {"site_id": site.code}


@loopback_allowed
def test_the_rotation_command_names_the_endpoints_no_key_decrypts_and_fails(operator):
    with keys(OLD_KEY):
        lost, _ = services.create_webhook(
            owner=operator, url="http://192.0.2.1/hook", events=["site.online"], site_codes=None
        )
    with keys(NEW_KEY):
        kept, kept_secret = services.create_webhook(
            owner=operator, url="http://192.0.2.2/hook", events=["site.online"], site_codes=None
        )
    lost_token, kept_token = stored_secret(lost), stored_secret(kept)
    third_key = Fernet.generate_key().decode()
    out = io.StringIO()
    with keys(third_key, NEW_KEY), pytest.raises(CommandError) as failed:
        call_command("reencrypt_webhook_secrets", stdout=out)
    assert "re-encrypted 1 webhook secrets" in out.getvalue()
    assert lost.code in str(failed.value) and kept.code not in str(failed.value)
    assert lost_token not in str(failed.value)
    assert stored_secret(lost) == lost_token  # left as it was
    assert stored_secret(kept) != kept_token
    with keys(NEW_KEY), pytest.raises(encryption.UndecryptableSecret):
        encryption.decrypt(stored_secret(kept))  # now under the first key only
    # With the missing key listed too, it succeeds and every secret is under the first key.
    with keys(third_key, OLD_KEY):
        call_command("reencrypt_webhook_secrets", stdout=io.StringIO())
    with keys(third_key):
        assert encryption.decrypt(stored_secret(kept)) == kept_secret
        assert encryption.decrypt(stored_secret(lost)).startswith(services.SECRET_PREFIX)


@loopback_allowed
def test_a_secret_no_key_decrypts_makes_a_dead_letter_with_its_reason_and_leaks_nothing(
    site, operator, operator_client, caplog
):
    caplog.set_level(logging.DEBUG)
    with HttpPeer(accept) as peer:
        with keys(OLD_KEY):
            webhook, secret = services.create_webhook(
                owner=operator, url=peer.url, events=["site.online"], site_codes=None
            )
        token = stored_secret(webhook)
        with keys(NEW_KEY):  # the key that encrypted it is missing
            [code] = services.publish("site.online", site, {"site_id": site.code})
            assert services.send_delivery(code, 0) == "dead"
        assert peer.requests == []  # nothing sent unsigned or signed with something else
        shown = operator_client.get(f"/v1/webhooks/{webhook.code}/deliveries").json()
        [delivery] = shown["deliveries"]
        assert delivery["status"] == "dead"
        [attempt] = delivery["attempt_log"]
        assert attempt["status_code"] is None
        assert attempt["error"] == services.UNDECRYPTABLE
        assert "ENEXA_SECRETS_KEY" in attempt["error"]
        # Our configuration, not the receiver's fault: the endpoint is not on a failure streak.
        webhook.refresh_from_db()
        assert webhook.enabled and webhook.failing_since is None
        assert f"webhook {webhook.code} delivery {code} not sent" in caplog.text
        assert token not in caplog.text and secret not in caplog.text
        # The key listed again, the dead letter retried by hand is delivered.
        with keys(NEW_KEY, OLD_KEY):
            services.retry_delivery(WebhookDelivery.objects.get(code=code), user=operator)
            assert services.send_delivery(code, 1) == "succeeded"
        [received] = peer.requests
    StandardWebhook(secret).verify(received["raw"], received["headers"])


@loopback_allowed
def test_the_enexa_worker_task_ends_normally_on_an_undecryptable_secret(site, operator):
    from enexa.webhooks import tasks

    with keys(OLD_KEY):
        services.create_webhook(
            owner=operator, url="http://192.0.2.1/hook", events=["site.online"], site_codes=None
        )
    with keys(NEW_KEY):
        [code] = services.publish("site.online", site, {"site_id": site.code})
        assert tasks.send_delivery.run(code, 0) == "dead"


# -- the migration ---------------------------------------------------------------------------

BEFORE = [("webhooks", "0001_initial")]
AFTER = [("webhooks", "0002_encrypt_webhook_secrets")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_stored_secrets_and_its_reverse_decrypts_them():
    plaintext = services.new_secret()
    owner = UserFactory()
    try:
        old_apps = migrate(BEFORE)
        old_apps.get_model("webhooks", "Webhook").objects.create(
            code="wh_old", owner_id=owner.pk, url="http://192.0.2.1/", secret=plaintext
        )
        with keys(NEW_KEY):
            migrate(AFTER)
            token = Webhook.objects.get(code="wh_old").encrypted_secret
            assert plaintext not in token and encryption.decrypt(token) == plaintext
            with keys(OLD_KEY), pytest.raises(RuntimeError, match="wh_old"):
                migrate(BEFORE)  # no key that encrypted it: refused, nothing changed
            assert Webhook.objects.get(code="wh_old").encrypted_secret == token
            old_apps = migrate(BEFORE)
        row = old_apps.get_model("webhooks", "Webhook").objects.get(code="wh_old")
        assert row.secret == plaintext
    finally:
        migrate(AFTER)

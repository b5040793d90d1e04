"""Webhook endpoints and their deliveries: subscribing (the secret revealed once, then kept
encrypted), publishing an event to the endpoints that may see its site, sending a delivery
signed as the Standard Webhooks specification says, retrying it with backoff and jitter, dead
letters, disabling an endpoint that keeps failing (with an alert), and re-encrypting the
secrets under a new key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import urllib3
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet, prefetch_related_objects
from django.utils import timezone

from enexa.alerts import services as alerts
from enexa.alerts.choices import Severity
from enexa.core import encryption
from enexa.core.encryption import UndecryptableSecret
from enexa.core.errors import ConflictError, ForbiddenError, InvalidInput
from enexa.core.metrics import WEBHOOK_ATTEMPTS
from enexa.core.network import UnsafeTarget, resolve_public
from enexa.core.principals import is_controller, is_staff_user
from enexa.registry.choices import MemberRole
from enexa.registry.models import Site, SiteMembership
from shared.fields import format_timestamp

from .choices import DeliveryStatus
from .models import Webhook, WebhookAttempt, WebhookDelivery

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix, not a secret
DISABLED_ALERT = "webhook_disabled"
USER_AGENT = "Enexa-Webhooks/1"
T = TypeVar("T")
# Deliveries per UPDATE and per message of a retry by hand (bounded statements and messages).
REQUEUE_BATCH = 500
# What of a receiver's answer is read: its status is what counts.
MAX_ERROR_CHARS = 500
UNDECRYPTABLE = (
    "Not sent: no key of ENEXA_SECRETS_KEY decrypts the endpoint's signing secret (a wrong "
    "or removed key); retry it once the key that encrypted it is listed."
)


def new_secret() -> str:
    """`whsec_` + base64 of 24 random bytes, as Standard Webhooks libraries expect."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` value: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body` with
    the base64-decoded secret after `whsec_`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    content = f"{message_id}.{timestamp}.{body}".encode()
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


# -- endpoints -------------------------------------------------------------------------------


def _check_manager(user: Any) -> None:
    """Staff and site operators manage webhooks; a viewer only reads, a controller key never."""
    if is_controller(user):
        raise ForbiddenError("A controller's API key cannot manage webhooks.")
    if is_staff_user(user):
        return
    if not SiteMembership.objects.filter(user=user, role=MemberRole.OPERATOR).exists():
        raise ForbiddenError("Only staff and site operators may manage webhooks.")


def _operable_sites(user: Any, codes: list[str]) -> list[Site]:
    """The sites named, each one the caller operates; one that is not is refused as unknown,
    so a webhook never reveals another operator's sites."""
    found = Site.objects.filter(code__in=codes)
    if not is_staff_user(user):
        found = found.filter(
            memberships__user=user, memberships__role=MemberRole.OPERATOR
        ).distinct()
    sites = list(found)
    missing = sorted(set(codes) - {s.code for s in sites})
    if missing:
        raise InvalidInput(
            "Unknown sites.", {"sites": [f"No site {code} that you operate." for code in missing]}
        )
    return sites


def check_target(url: str) -> list[str]:
    """The public addresses the URL's host resolves to (any address when
    ENEXA_WEBHOOK_ALLOW_PRIVATE); raises UnsafeTarget for a target inside."""
    parts = urllib3.util.parse_url(url)
    if parts.scheme not in ("http", "https") or not parts.host:
        raise UnsafeTarget("Must be an http or https URL with a host.")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return resolve_public(
        parts.host.strip("[]"), port, allow_private=settings.ENEXA_WEBHOOK_ALLOW_PRIVATE
    )


def _checked_url(url: str) -> str:
    try:
        check_target(url)
    except UnsafeTarget as exc:
        raise InvalidInput("The webhook URL is refused.", {"url": [str(exc)]}) from exc
    return url


def create_webhook(
    *, owner: Any, url: str, events: list[str], site_codes: list[str] | None
) -> tuple[Webhook, str]:
    """A new endpoint; returns (webhook, secret), the secret's only reveal."""
    _check_manager(owner)
    sites = _operable_sites(owner, site_codes) if site_codes else []
    secret = new_secret()
    with transaction.atomic():
        webhook = Webhook.objects.create(
            code=f"wh_{secrets.token_hex(8)}",
            owner=owner,
            url=_checked_url(url),
            events=sorted(set(events)),
            encrypted_secret=encryption.encrypt(secret),
        )
        webhook.sites.set(sites)
    logger.info("webhook %s created by user %s for %s", webhook.code, owner.pk, webhook.events)
    return webhook, secret


def update_webhook(webhook: Webhook, *, user: Any, changes: dict[str, Any]) -> Webhook:
    """Change the URL, events, sites or `enabled`; enabling again clears the failure streak
    and resolves its `webhook_disabled` alert."""
    _check_manager(user)
    if "url" in changes:
        webhook.url = _checked_url(changes["url"])
    if "events" in changes:
        webhook.events = sorted(set(changes["events"]))
    reenabled = changes.get("enabled") is True and not webhook.enabled
    if "enabled" in changes:
        webhook.enabled = changes["enabled"]
        webhook.disabled_reason = "" if webhook.enabled else "Disabled by its owner."
    if reenabled:
        webhook.failing_since = None
    with transaction.atomic():
        webhook.save()
        if "sites" in changes:
            webhook.sites.set(_operable_sites(user, changes["sites"]) if changes["sites"] else [])
        if reenabled:
            alerts.resolve_subject(DISABLED_ALERT, webhook.code)
    return webhook


def delete_webhook(webhook: Webhook, *, user: Any) -> None:
    _check_manager(user)
    with transaction.atomic():
        alerts.resolve_subject(DISABLED_ALERT, webhook.code)
        webhook.delete()


def visible_webhooks(user: Any):
    """Staff see every endpoint, others their own; a controller key none."""
    if is_controller(user):
        return Webhook.objects.none()
    webhooks = Webhook.objects.select_related("owner").prefetch_related("sites")
    return webhooks if is_staff_user(user) else webhooks.filter(owner=user)


# -- publishing ------------------------------------------------------------------------------


def publish(
    event_type: str,
    site: Site | None,
    data: dict[str, Any] | Callable[[], dict[str, Any]],
    *,
    now: datetime | None = None,
) -> list[str]:
    """Queue the event for every enabled endpoint subscribed to it whose owner may see the
    site (and that lists the site, when it lists sites); returns the delivery ids. Call it
    inside the transaction that made the change or after it: the deliveries are sent once
    their rows are committed. A site-less event goes to staff endpoints without a site list.
    `data` may be a function making it, called only when some endpoint is subscribed: an
    event nobody subscribed to costs one query (a command's status changes on the worker
    that delivers commands)."""
    enabled = Webhook.objects.filter(enabled=True).select_related("owner")
    subscribed = [webhook for webhook in enabled if event_type in webhook.events]
    if not subscribed:
        return []
    prefetch_related_objects(subscribed, "sites")
    now = now or timezone.now()
    body = json.dumps(
        {
            "type": event_type,
            "timestamp": format_timestamp(now),
            "data": data() if callable(data) else data,
        },
        separators=(",", ":"),
        sort_keys=True,
    )
    members = (
        set(SiteMembership.objects.filter(site=site).values_list("user_id", flat=True))
        if site is not None
        else set()
    )
    deliveries = []
    for webhook in subscribed:
        listed = {s.pk for s in webhook.sites.all()}
        if site is None:
            if not (webhook.owner.is_staff and not listed):
                continue
        elif not (webhook.owner.is_staff or webhook.owner_id in members):
            continue  # an operator's endpoint hears only of their sites
        elif listed and site.pk not in listed:
            continue
        deliveries.append(
            WebhookDelivery(
                code=f"msg_{secrets.token_hex(12)}",
                webhook=webhook,
                event_type=event_type,
                site=site,
                body=body,
                next_attempt_at=now,
                created_at=now,
            )
        )
    WebhookDelivery.objects.bulk_create(deliveries)
    codes = [d.code for d in deliveries]
    if codes:
        transaction.on_commit(lambda: enqueue_attempts([(code, 0) for code in codes]))
    return codes


def enqueue_attempts(attempts: list[tuple[str, int]]) -> None:
    """Queue a send_delivery task of each (delivery code, attempts done)."""
    for code, done in attempts:
        _enqueue(code, done)


def _enqueue(code: str, attempts_done: int, countdown_s: float = 0.0) -> None:
    from . import tasks  # the tasks call this module

    tasks.send_delivery.apply_async((code, attempts_done), countdown=countdown_s)


# -- sending ---------------------------------------------------------------------------------


def retry_schedule_s() -> list[float]:
    """Seconds after each failed attempt until the next (ENEXA_WEBHOOK_RETRY_SCHEDULE_S)."""
    return [float(s) for s in settings.ENEXA_WEBHOOK_RETRY_SCHEDULE_S]


def max_attempts() -> int:
    return 1 + len(retry_schedule_s())


def next_delay_s(attempts_done: int) -> float:
    """The wait after the `attempts_done`-th failed attempt, with jitter (so endpoints that
    failed together are not all retried in the same second)."""
    base = retry_schedule_s()[attempts_done - 1]
    return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret


def _lease_s() -> float:
    """How long a claimed attempt may take before the sweep may try it again."""
    return 2 * settings.ENEXA_WEBHOOK_TIMEOUT_S + 30


@dataclass(frozen=True)
class Answer:
    """What came of one POST: the status code, or the error when there was none."""

    status_code: int | None
    error: str
    duration_ms: int


def send_delivery(code: str, attempts_done: int, *, now: datetime | None = None) -> str | None:
    """Make attempt `attempts_done + 1` of the delivery, unless another worker has already
    (the claim is the conditional bump of `attempts`), and schedule what follows: done, the
    next try, or the dead letter. Returns the delivery's status, None when not claimed."""
    now = now or timezone.now()
    claimed = WebhookDelivery.objects.filter(
        code=code, status=DeliveryStatus.PENDING, attempts=attempts_done
    ).update(attempts=F("attempts") + 1, next_attempt_at=now + timedelta(seconds=_lease_s()))
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("webhook").get(code=code)
    webhook = delivery.webhook
    if not webhook.enabled:
        return _dead_unsent(delivery, now, "The endpoint is disabled.")
    try:
        secret = encryption.decrypt(webhook.encrypted_secret)
    except UndecryptableSecret:
        # Our configuration, not the receiver: no retries (they would fail alike), and the
        # endpoint's failure streak is left alone. Codes only: never the stored value.
        logger.error(
            "webhook %s delivery %s not sent: no key of ENEXA_SECRETS_KEY decrypts its secret",
            webhook.code,
            delivery.code,
        )
        return _dead_unsent(delivery, now, UNDECRYPTABLE)
    answer = _post(webhook, delivery, secret)
    _record(delivery, now, answer)
    if answer.status_code is not None and 200 <= answer.status_code < 300:
        _finish(delivery, DeliveryStatus.SUCCEEDED, now)
        Webhook.objects.filter(pk=webhook.pk).update(failing_since=None)
        return delivery.status
    logger.warning(
        "webhook %s delivery %s attempt %s failed: %s",
        webhook.code,
        delivery.code,
        delivery.attempts,
        answer.status_code or answer.error,
    )
    _after_failure(webhook, now)
    if delivery.attempts >= max_attempts():
        _finish(delivery, DeliveryStatus.DEAD, now)
        logger.warning("webhook %s delivery %s is a dead letter", webhook.code, delivery.code)
        return delivery.status
    delay_s = next_delay_s(delivery.attempts)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=now + timedelta(seconds=delay_s)
    )
    # Short waits ride on the task's countdown; long ones are left to the sweep, so no broker
    # holds a message for hours (Redis would redeliver it after its visibility timeout).
    if delay_s <= settings.ENEXA_WEBHOOK_COUNTDOWN_MAX_S:
        _enqueue(delivery.code, delivery.attempts, delay_s)
    return DeliveryStatus.PENDING


def _dead_unsent(delivery: WebhookDelivery, now: datetime, reason: str) -> str:
    """End the delivery as a dead letter without a POST, the reason in its attempt log."""
    _finish(delivery, DeliveryStatus.DEAD, now)
    _record(delivery, now, Answer(None, reason, 0))
    return delivery.status


def _finish(delivery: WebhookDelivery, status: str, now: datetime) -> None:
    delivery.status = status
    delivery.next_attempt_at = None
    if status == DeliveryStatus.SUCCEEDED:
        delivery.delivered_at = now
    delivery.save(update_fields=["status", "next_attempt_at", "delivered_at"])


def _record(delivery: WebhookDelivery, now: datetime, answer: Answer) -> None:
    WEBHOOK_ATTEMPTS.labels(outcome=_outcome(answer)).inc()
    WebhookAttempt.objects.create(
        delivery=delivery,
        attempted_at=now,
        status_code=answer.status_code,
        error=answer.error[:MAX_ERROR_CHARS],
        duration_ms=answer.duration_ms,
    )


def _outcome(answer: Answer) -> str:
    """The attempt's outcome as /metrics counts it: delivered, http_<class> or error."""
    code = answer.status_code
    if code is None:
        return "error"
    return "delivered" if 200 <= code < 300 else f"http_{code // 100}xx"


def _after_failure(webhook: Webhook, now: datetime) -> None:
    """Start or extend the failure streak; past ENEXA_WEBHOOK_DISABLE_AFTER_S the endpoint is
    disabled and an alert opened."""
    Webhook.objects.filter(pk=webhook.pk, failing_since__isnull=True).update(failing_since=now)
    webhook.refresh_from_db(fields=["failing_since", "enabled"])
    limit = timedelta(seconds=settings.ENEXA_WEBHOOK_DISABLE_AFTER_S)
    if not webhook.enabled or webhook.failing_since is None or now - webhook.failing_since < limit:
        return
    reason = f"Every delivery failed since {format_timestamp(webhook.failing_since)}."
    if Webhook.objects.filter(pk=webhook.pk, enabled=True).update(
        enabled=False, disabled_reason=reason
    ):
        logger.warning("webhook %s disabled: %s", webhook.code, reason)
        alerts.open_alert(
            DISABLED_ALERT,
            Severity.WARNING,
            {"webhook_id": webhook.code, "url": webhook.url, "reason": reason},
            subject=webhook.code,
            now=now,
        )


def _post(webhook: Webhook, delivery: WebhookDelivery, secret: str) -> Answer:
    """POST the body signed with `secret` to the endpoint, connecting to an address checked
    just now (not to whatever the name resolves to next); never follows a redirect."""
    started = time.monotonic()

    def answer(status_code: int | None, error: str = "") -> Answer:
        return Answer(status_code, error, int((time.monotonic() - started) * 1000))

    try:
        address = check_target(webhook.url)[0]
    except UnsafeTarget as exc:
        return answer(None, f"Refused: {exc}")
    parts = urllib3.util.parse_url(webhook.url)
    host = parts.host or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Host": host if parts.port is None else f"{host}:{parts.port}",
        "webhook-id": delivery.code,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, delivery.code, timestamp, delivery.body),
    }
    timeout = urllib3.Timeout(
        connect=settings.ENEXA_WEBHOOK_TIMEOUT_S, read=settings.ENEXA_WEBHOOK_TIMEOUT_S
    )
    pool: urllib3.HTTPConnectionPool
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address,
            port,
            timeout=timeout,
            retries=False,
            server_hostname=host,
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False)
    try:
        with pool:
            response = pool.urlopen(
                "POST",
                parts.request_uri,
                body=delivery.body.encode(),
                headers=headers,
                redirect=False,
                preload_content=False,
            )
            response.release_conn()
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        # The kind of failure only: its text may carry the URL's query, where some receivers
        # keep a token of their own.
        return answer(None, type(exc).__name__)
    error = "" if 200 <= response.status < 300 else f"HTTP {response.status}"
    return answer(response.status, error)


# -- retries and the sweep -------------------------------------------------------------------


def retry_delivery(
    delivery: WebhookDelivery, *, user: Any, now: datetime | None = None
) -> WebhookDelivery:
    """Try a delivery again now (a dead letter gets one more attempt); one that succeeded is
    not sent twice."""
    _check_manager(user)
    now = now or timezone.now()
    unsent = ~Q(status=DeliveryStatus.SUCCEEDED)
    if delivery.status == DeliveryStatus.SUCCEEDED or not _requeue(
        WebhookDelivery.objects.filter(pk=delivery.pk), unsent, now
    ):
        raise ConflictError(f"Delivery {delivery.code} already succeeded.")
    delivery.refresh_from_db()
    return delivery


@dataclass(frozen=True)
class BulkRetry:
    """What a retry of many deliveries did: dead letters queued, other deliveries left alone."""

    retried: int
    skipped: int


def retry_dead_letters(
    deliveries: QuerySet[WebhookDelivery],
    *,
    user: Any,
    codes: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
) -> BulkRetry:
    """Give every dead letter among `deliveries` (narrowed to the ids `codes`, and to those
    created in [start, end)) one more attempt, as retry_delivery gives one; the others are
    skipped, untouched. A code that is none of `deliveries` refuses the whole call, before any
    change."""
    _check_manager(user)
    now = now or timezone.now()
    if codes is not None:
        found = set(deliveries.filter(code__in=codes).values_list("code", flat=True))
        missing = sorted(set(codes) - found)
        if missing:
            raise InvalidInput(
                "Unknown deliveries.",
                {"ids": [f"No delivery {code} of this endpoint." for code in missing]},
            )
        deliveries = deliveries.filter(code__in=codes)
    if start is not None:
        deliveries = deliveries.filter(created_at__gte=start)
    if end is not None:
        deliveries = deliveries.filter(created_at__lt=end)
    with transaction.atomic():
        retried = _requeue(deliveries, Q(status=DeliveryStatus.DEAD), now)
        chosen = deliveries.count()
    logger.info("user %s retried %s dead letters (%s skipped)", user.pk, retried, chosen - retried)
    return BulkRetry(retried, chosen - retried)


def _requeue(chosen: QuerySet[WebhookDelivery], retriable: Q, now: datetime) -> int:
    """Make the `retriable` deliveries among `chosen` pending again and, once committed, have
    the worker queue each one's next attempt: the one way a delivery is retried by hand, alone
    or in bulk. Returns how many were.

    The rows are locked as they are read, and `retriable` is checked on the locked row: a
    second retry of the same dead letters waits for the first to commit, then finds them
    pending and leaves them, so each attempt is queued once. (A repeated message would send
    nothing anyway: send_delivery claims the delivery by its attempt number.) The lease keeps
    the sweep off them while their messages wait, and sends any message lost after it."""
    with transaction.atomic():
        # The condition on the outer query, where PostgreSQL checks it again on a row a
        # concurrent retry changed; FOR UPDATE on the table alone, since it refuses the outer
        # joins a caller's queryset may carry (the admin's list joins the site).
        rows = list(
            WebhookDelivery.objects.filter(retriable, pk__in=chosen.values("pk"))
            .select_for_update()
            .order_by("pk")
            .values_list("pk", "code", "attempts")
        )
        for batch in _batches(rows):
            WebhookDelivery.objects.filter(pk__in=[pk for pk, _, _ in batch]).update(
                status=DeliveryStatus.PENDING, next_attempt_at=now + timedelta(seconds=_lease_s())
            )
    attempts = [(code, done) for _, code, done in rows]
    if attempts:
        transaction.on_commit(lambda: _enqueue_requeued(attempts))
    return len(rows)


def _enqueue_requeued(attempts: list[tuple[str, int]]) -> None:
    """One message per REQUEUE_BATCH deliveries: the web process never sends thousands."""
    from . import tasks  # the tasks call this module

    for batch in _batches(attempts):
        tasks.send_requeued.delay([list(pair) for pair in batch])


def _batches(items: list[T]) -> list[list[T]]:
    return [items[i : i + REQUEUE_BATCH] for i in range(0, len(items), REQUEUE_BATCH)]


def send_due(*, now: datetime | None = None, batch: int = 500) -> int:
    """Beat: enqueue every pending delivery whose next attempt is due (the long waits, and
    any whose task was lost); each is pushed past the lease so the next sweep skips it while
    it is in flight. Returns how many were enqueued."""
    now = now or timezone.now()
    due = list(
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", "code", "attempts")[:batch]
    )
    if not due:
        return 0
    WebhookDelivery.objects.filter(pk__in=[pk for pk, _, _ in due]).update(
        next_attempt_at=now + timedelta(seconds=_lease_s())
    )
    for _, code, attempts in due:
        _enqueue(code, attempts)
    return len(due)


# -- the encryption key ----------------------------------------------------------------------


def reencrypt_secrets() -> tuple[int, list[str]]:
    """Encrypt every endpoint's signing secret anew under the first key of ENEXA_SECRETS_KEY
    (after a new key was put first); returns how many were, and the codes of the endpoints
    whose secret no key decrypts (left as they are: their deliveries fail until the key that
    encrypted them is listed)."""
    done, undecryptable = 0, []
    # A list, not a cursor left open while its table is written (endpoints are few).
    rows = list(Webhook.objects.order_by("pk").values_list("pk", "code", "encrypted_secret"))
    for pk, code, stored in rows:
        try:
            fresh = encryption.reencrypt(stored)
        except UndecryptableSecret:
            undecryptable.append(code)
            continue
        # `update`, not `save`: a new key is no change of the endpoint (updated_at stays).
        Webhook.objects.filter(pk=pk).update(encrypted_secret=fresh)
        done += 1
    if undecryptable:
        logger.error(
            "%s webhook secrets not re-encrypted (no key decrypts them): %s",
            len(undecryptable),
            ", ".join(undecryptable),
        )
    return done, undecryptable

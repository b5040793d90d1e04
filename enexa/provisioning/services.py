"""Provisioning services: enrollment, API keys and the controller lifecycle."""

import functools
import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from enexa.core.errors import ConflictError, ForbiddenError, InvalidCredentials, InvalidInput
from enexa.core.network import ip_in
from enexa.core.principals import API_KEY_PREFIX, ControllerPrincipal
from enexa.core.sql import run_prepared
from enexa.registry.choices import ControllerState
from enexa.registry.models import Controller, Site
from enexa.registry.services import next_controller_code

from . import keycache
from .models import ApiKey, ControllerAccess, EnrollmentToken

logger = logging.getLogger(__name__)

ENROLLMENT_PREFIX = "enr_"
# A key's last_used_at is written at most this often, so each call does not cost a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)
BLOCKED_STATES = {ControllerState.SUSPENDED, ControllerState.DECOMMISSIONED}

# Staff moves: target state -> states it may be reached from. "pending" is the reset that
# lets the serial register again.
STATE_TRANSITIONS = {
    ControllerState.SUSPENDED: {ControllerState.REGISTERED, ControllerState.ACTIVE},
    ControllerState.ACTIVE: {ControllerState.SUSPENDED},
    ControllerState.DECOMMISSIONED: {
        ControllerState.PENDING,
        ControllerState.REGISTERED,
        ControllerState.ACTIVE,
        ControllerState.SUSPENDED,
    },
    ControllerState.PENDING: {
        ControllerState.REGISTERED,
        ControllerState.ACTIVE,
        ControllerState.SUSPENDED,
        ControllerState.DECOMMISSIONED,
    },
}


def hash_secret(secret: str) -> str:
    # The secrets are 256-bit random values, so a fast hash is enough (no password stretching).
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_credential(prefix: str) -> tuple[str, str, str]:
    """(lookup, secret hash, plaintext `<prefix><lookup>.<secret>`)."""
    lookup = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return lookup, hash_secret(secret), f"{prefix}{lookup}.{secret}"


def _split_credential(token: str, prefix: str) -> tuple[str, str] | None:
    if not token or not token.startswith(prefix):
        return None
    lookup, dot, secret = token[len(prefix) :].partition(".")
    if not dot or not lookup or not secret or len(lookup) > 16:
        return None
    return lookup, secret


def _matches(secret: str, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), secret_hash)


# API keys


def issue_api_key(controller: Controller) -> tuple[ApiKey, str]:
    """A new key for `controller`; the plaintext is returned once and never stored."""
    lookup, secret_hash, plaintext = _new_credential(API_KEY_PREFIX)
    key = ApiKey.objects.create(controller=controller, lookup=lookup, secret_hash=secret_hash)
    logger.info("issued API key enx_%s for controller %s", lookup, controller.code)
    return key, plaintext


# Every controller call authenticates, so the lookup is one hand-written statement: the ORM
# spent more time compiling this three-join query than PostgreSQL spent answering it. It reads
# the stored values, not decisions at a moment: a row may be reused from keycache, so expiry,
# rotation grace and last use are decided at each call.
_KEY_LOOKUP_SQL = """
SELECT k.id, k.secret_hash, k.revoked_at IS NOT NULL, k.expires_at, k.last_used_at,
       c.id, c.code, c.state, c.site_id, s.code, a.ip_allowlist
FROM {key} k
JOIN {controller} c ON c.id = k.controller_id
JOIN {site} s ON s.id = c.site_id
LEFT JOIN {access} a ON a.controller_id = c.id
WHERE k.lookup = %s
"""


@functools.cache
def _key_lookup_sql() -> str:
    return _KEY_LOOKUP_SQL.format(
        key=ApiKey._meta.db_table,
        controller=Controller._meta.db_table,
        site=Site._meta.db_table,
        access=ControllerAccess._meta.db_table,
    )


def _read_key(lookup: str, generation: bytes | None = None) -> keycache.KeyRow | None:
    """The key's row from the cache when this process holds it under Redis's current
    generation (`generation` when the caller has just read it), else from the database (and
    remembered under the generation seen before)."""
    if generation is None:
        generation = keycache.current_generation()
    row = keycache.cached(lookup, generation)
    if row is not None:
        return row
    rows = run_prepared(_key_lookup_sql(), [lookup], fetch=True)
    if not rows:
        return None  # unknown lookups are not kept: a key issued a moment later works at once
    (
        key_pk,
        secret_hash,
        revoked,
        expires_at,
        last_used_at,
        c_pk,
        code,
        state,
        s_pk,
        s_code,
        allow,
    ) = rows[0]
    if isinstance(allow, str):  # SQLite hands JSON back as text
        allow = json.loads(allow)
    row = keycache.KeyRow(
        key_pk=key_pk,
        secret_hash=secret_hash,
        revoked=bool(revoked),
        expires_at=keycache.as_datetime(expires_at),
        last_used_at=keycache.as_datetime(last_used_at),
        controller_pk=c_pk,
        controller_code=code,
        state=state,
        site_pk=s_pk,
        site_code=s_code,
        allowlist=allow,
    )
    keycache.remember(lookup, generation, row)
    return row


def authenticate_api_key(
    raw_key: str, client_ip: str | None = None, *, generation: bytes | None = None
) -> ControllerPrincipal | None:
    """The principal for a presented API key, or None when it is unknown, wrong, revoked,
    expired or its controller is suspended or decommissioned. Raises ForbiddenError when the
    key is good but `client_ip` is outside the controller's allowlist. `generation`: the key
    cache's generation, when the caller has just read it from Redis."""
    parts = _split_credential(raw_key, API_KEY_PREFIX)
    if parts is None:
        return None
    lookup, secret = parts
    row = _read_key(lookup, generation)
    if row is None:
        return None
    now = timezone.now()
    principal = _principal_of(row, lookup, secret, client_ip, now)
    if principal is not None:
        _note_use(row, lookup, now)
    return principal


@dataclass(frozen=True)
class CachedKey:
    """What this process's cached row of a presented key decides (cached_api_key), and what
    recording its use needs."""

    principal: ControllerPrincipal
    generation: bytes  # the key cache's generation the row was read under
    lookup: str
    row: keycache.KeyRow


def cached_api_key(raw_key: str, client_ip: str | None = None) -> CachedKey | None:
    """What authenticate_api_key would decide from this process's cached row of the key; None
    when no row is cached or it authenticates no one. Reads no database and writes nothing:
    the decision holds only once the caller has confirmed with Redis that the row's generation
    is still current (then record_key_use records the key's use)."""
    parts = _split_credential(raw_key, API_KEY_PREFIX)
    if parts is None:
        return None
    lookup, secret = parts
    cached = keycache.latest(lookup)
    if cached is None:
        return None
    generation, row = cached
    principal = _principal_of(row, lookup, secret, client_ip, timezone.now())
    return None if principal is None else CachedKey(principal, generation, lookup, row)


def record_key_use(key: CachedKey) -> None:
    """A cached key's use, confirmed current, recorded as authenticate_api_key records it."""
    _note_use(key.row, key.lookup, timezone.now())


def _note_use(row: keycache.KeyRow, lookup: str, now: datetime) -> None:
    """The key's last use, written at most once per LAST_USED_RESOLUTION."""
    stale_before = now - LAST_USED_RESOLUTION
    if row.last_used_at is None or row.last_used_at < stale_before:
        with keycache.unchanged():  # a key's last use decides nothing the lookup returns
            ApiKey.objects.filter(pk=row.key_pk).filter(
                Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale_before)
            ).update(last_used_at=now)
        keycache.note_used(lookup, now)


def _principal_of(
    row: keycache.KeyRow, lookup: str, secret: str, client_ip: str | None, now: datetime
) -> ControllerPrincipal | None:
    """The principal of a key's row for a presented secret at `now` (None when refused);
    raises ForbiddenError for an address outside the controller's allowlist."""
    if not _matches(secret, row.secret_hash):
        return None
    expired = row.expires_at is not None and row.expires_at <= now
    if row.revoked or expired or row.state in BLOCKED_STATES:
        return None
    if row.allowlist and not ip_in(client_ip, row.allowlist):
        logger.warning(
            "controller %s refused from %s (not in its allowlist)", row.controller_code, client_ip
        )
        raise ForbiddenError("This address may not use this controller's key.")
    return ControllerPrincipal(
        controller_pk=row.controller_pk,
        controller_code=row.controller_code,
        site_pk=row.site_pk,
        site_code=row.site_code,
        key_prefix=f"{API_KEY_PREFIX}{lookup}",
    )


def rotate_api_key(controller: Controller, grace_s: int | None = None) -> tuple[str, datetime]:
    """Issue a new key; the current ones keep working for `grace_s` seconds (default
    ENEXA_API_KEY_ROTATION_GRACE_S), so a gateway can switch without downtime. Returns the new
    key and the deadline stored on the current ones."""
    if grace_s is None:
        grace_s = settings.ENEXA_API_KEY_ROTATION_GRACE_S
    if grace_s < 0:
        raise InvalidInput("The grace period cannot be negative.", {"grace_s": ["Must be >= 0."]})
    deadline = timezone.now() + timedelta(seconds=grace_s)
    with transaction.atomic():
        current = ApiKey.objects.filter(controller=controller, revoked_at__isnull=True)
        current.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=deadline)).update(
            expires_at=deadline
        )
        _, plaintext = issue_api_key(controller)
    logger.info("rotated API key of controller %s (grace %s s)", controller.code, grace_s)
    return plaintext, deadline


def revoke_api_keys(controller: Controller) -> int:
    """Revoke every key of `controller` at once; returns how many were still usable."""
    now = timezone.now()
    unrevoked = ApiKey.objects.filter(controller=controller, revoked_at__isnull=True)
    count = unrevoked.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now)).update(
        revoked_at=now
    )
    unrevoked.update(revoked_at=now)  # rotated-out keys too, so the record reads plainly
    logger.info("revoked %s API key(s) of controller %s", count, controller.code)
    return count


def ip_allowlist_of(controller: Controller) -> list[str]:
    access = ControllerAccess.objects.filter(controller=controller).first()
    return list(access.ip_allowlist) if access else []


def set_ip_allowlist(controller: Controller, networks: list[str]) -> list[str]:
    """Replace the networks (CIDR, as models.cidr_networks normalised them) `controller`'s key
    may be used from; [] allows any."""
    ControllerAccess.objects.update_or_create(
        controller=controller, defaults={"ip_allowlist": networks}
    )
    logger.info("IP allowlist of controller %s set to %s", controller.code, networks)
    return networks


# Enrollment


def create_enrollment_token(
    site: Site, uses: int = 1, ttl_s: int | None = None, created_by=None
) -> tuple[EnrollmentToken, str]:
    """An enrollment secret for `site`; the plaintext (`enr_...`) is returned once."""
    if ttl_s is None:
        ttl_s = settings.ENEXA_ENROLLMENT_TTL_S
    errors = {}
    if uses < 1:
        errors["uses"] = ["Must be at least 1."]
    if ttl_s < 1:
        errors["ttl_s"] = ["Must be at least 1 second."]
    if errors:
        raise InvalidInput("The enrollment token settings are invalid.", errors)
    lookup, secret_hash, plaintext = _new_credential(ENROLLMENT_PREFIX)
    token = EnrollmentToken.objects.create(
        site=site,
        lookup=lookup,
        secret_hash=secret_hash,
        uses_left=uses,
        expires_at=timezone.now() + timedelta(seconds=ttl_s),
        created_by=created_by,
    )
    logger.info("enrollment token enr_%s created for site %s (%s uses)", lookup, site.code, uses)
    return token, plaintext


def _enrollment_token_for(secret_token: str, site_code: str) -> EnrollmentToken:
    parts = _split_credential(secret_token or "", ENROLLMENT_PREFIX)
    refused = InvalidCredentials("The enrollment secret is not valid for this site.")
    if parts is None:
        raise refused
    lookup, secret = parts
    token = (
        EnrollmentToken.objects.select_for_update()
        .select_related("site")
        .filter(lookup=lookup)
        .first()
    )
    if (
        token is None
        or not _matches(secret, token.secret_hash)
        or not token.is_usable()
        or token.site.code != site_code
    ):
        raise refused
    return token


def _bindable(controller: Controller, site_pk: int) -> bool:
    """A pre-registered controller the gateway may claim: at the secret's site, and pending,
    or registered by staff without credentials ever issued (as the demo's CTRL001)."""
    if controller.site_id != site_pk:
        return False
    if controller.state == ControllerState.PENDING:
        return True
    return controller.state == ControllerState.REGISTERED and not controller.api_keys.exists()


def register_controller(
    enrollment_secret: str, serial: str, site_code: str
) -> tuple[Controller, str]:
    """Register the gateway `serial` at `site_code` with a site enrollment secret.

    Binds to the controller staff pre-registered with that serial at that site (see
    `_bindable`), else creates the site's next controller. A serial that already holds keys,
    is active, suspended, decommissioned or at another site is a conflict until staff reset it.
    Returns the controller and its new API key (plaintext, shown once)."""
    serial = (serial or "").strip()
    if not serial:
        raise InvalidInput("The serial is required.", {"serial": ["This field is required."]})
    for _ in range(3):  # two registrations may race for the same next code
        try:
            with transaction.atomic():
                token = _enrollment_token_for(enrollment_secret, site_code)
                controller = Controller.objects.select_for_update().filter(serial=serial).first()
                if controller is not None and not _bindable(controller, token.site_id):
                    raise ConflictError(
                        f"The serial {serial} is already registered; staff must reset it first."
                    )
                if controller is None:
                    controller = Controller.objects.create(
                        code=next_controller_code(),
                        serial=serial,
                        site=token.site,
                        state=ControllerState.REGISTERED,
                    )
                else:
                    controller.state = ControllerState.REGISTERED
                    controller.save(update_fields=["state", "updated_at"])
                EnrollmentToken.objects.filter(pk=token.pk).update(uses_left=F("uses_left") - 1)
                revoke_api_keys(controller)
                _, plaintext = issue_api_key(controller)
        except IntegrityError:
            continue
        logger.info(
            "controller %s (serial %s) registered at site %s", controller.code, serial, site_code
        )
        return controller, plaintext
    raise ConflictError(f"The serial {serial} could not be registered; retry.")


def initial_config(controller_pk: int) -> dict:
    """What a newly registered gateway needs: its effective configuration and its assets."""
    from enexa.configs.services import effective_config_for

    controller = Controller.objects.select_related("site").get(pk=controller_pk)
    assets = controller.assets.all()
    if not assets.exists():  # none assigned: the gateway runs the whole site
        assets = controller.site.equipment.all()
    return {
        "config": effective_config_for(controller),
        "assets": [
            {
                "id": asset.code,
                "kind": asset.kind,
                "name": asset.name,
                "model": asset.model,
                "serial": asset.serial,
                "parent_id": asset.parent.code if asset.parent_id else None,
                "specs": asset.specs(),
            }
            for asset in assets.select_related("parent").order_by("kind", "code")
        ],
    }


def activate_controller(
    controller_pk: int, status: str, tests_passed: bool, detail: str = ""
) -> bool:
    """Go live when the gateway reports `ready` with its tests passed; otherwise it stays
    inactive and the reason is kept (ControllerAccess.activation_detail)."""
    with transaction.atomic():
        controller = Controller.objects.select_for_update().get(pk=controller_pk)
        access, _ = ControllerAccess.objects.get_or_create(controller=controller)
        if controller.state == ControllerState.ACTIVE:
            return True
        if status == "ready" and tests_passed:
            controller.state = ControllerState.ACTIVE
            controller.save(update_fields=["state", "updated_at"])
            access.activated_at = timezone.now()
            access.activation_detail = ""
            access.save(update_fields=["activated_at", "activation_detail", "updated_at"])
            logger.info("controller %s activated", controller.code)
            return True
        reasons = []
        if status != "ready":
            reasons.append(f"status {status!r}")
        if not tests_passed:
            reasons.append("tests failed")
        access.activation_detail = "; ".join(reasons) + (f": {detail}" if detail else "")
        access.save(update_fields=["activation_detail", "updated_at"])
        logger.warning("controller %s not activated: %s", controller.code, access.activation_detail)
        return False


# Lifecycle (staff)


def set_controller_state(controller: Controller, state: str) -> Controller:
    """Staff lifecycle moves: suspend, resume (active), decommission, reset (pending).

    Suspending or decommissioning stops the controller's key at once (authentication checks
    the state); a reset also revokes its keys so the serial can register again."""
    if state not in STATE_TRANSITIONS:
        raise InvalidInput(
            f"'{state}' is not a state staff can set.",
            {"state": ["Must be one of: " + ", ".join(sorted(STATE_TRANSITIONS)) + "."]},
        )
    with transaction.atomic():
        controller = Controller.objects.select_for_update().get(pk=controller.pk)
        if controller.state == state:
            return controller
        if controller.state not in STATE_TRANSITIONS[state]:
            raise ConflictError(f"A {controller.state} controller cannot become {state}.")
        controller.state = state
        controller.save(update_fields=["state", "updated_at"])
        if state in (ControllerState.PENDING, ControllerState.DECOMMISSIONED):
            revoke_api_keys(controller)
    logger.info("controller %s is now %s", controller.code, state)
    return controller

"""The gateways' hot path: `POST /v1/telemetry` with a controller's API key, answered before
Django's middleware chain, URL resolution and DRF (enexa.wsgi routes it here first).

For a single reading that stack cost more than the reading's validation and storage together.
This path does what the stack does for this one call, with the same functions: request id,
the failed-authentication and rate limits, the API-key check (revocation and suspension take
effect at once, as everywhere), the ingest service, the ingest metrics, the same response
headers (the same middleware's `process_response`) and the audit row.

Anything else is left to the full stack *before anything is counted or written*: another
method, path or content type, a query string, a user's token, a body too large, malformed or
nested too deep, a key that does not authenticate, an address over its failed-authentication
limit, a rate limit reached, a malformed envelope, or a batch whose every item is rejected.
Every error therefore has one definition, the full stack's. ENEXA_INGEST_FAST_PATH=0 turns this
path off."""

from __future__ import annotations

import time

import orjson
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware
from rest_framework.exceptions import Throttled

from enexa.api import throttling
from enexa.api.authentication import bearer_token
from enexa.api.middleware import database_unavailable, too_large
from enexa.api.parsers import nested_too_deeply
from enexa.audit import services as audit
from enexa.core import metrics
from enexa.core.errors import DomainError, InvalidInput
from enexa.core.network import client_ip
from enexa.core.principals import API_KEY_PREFIX, ControllerPrincipal, principal_label
from enexa.provisioning import keycache
from enexa.provisioning.services import authenticate_api_key, cached_api_key, record_key_use
from shared.logs import REQUEST_ID_HEADER, REQUEST_ID_META, accept_request_id, request_context

from . import services
from .views import TelemetryIngestView, count_items, poster_for

PATH = "/v1/telemetry"
# What DRF's JSON parser reads as UTF-8 JSON, and what its JSON renderer answers.
CONTENT_TYPES = {
    "application/json",
    "application/json; charset=utf-8",
    "application/json;charset=utf-8",
}
ACCEPTS = {"", "*/*", "application/json"}
# The view the full stack would answer with: its allowed methods (DRF's Allow header) and
# its rate-limit scope come from it.
VIEW = TelemetryIngestView()
ALLOW = ", ".join(VIEW.allowed_methods)

# The response headers the full stack adds to this answer, from the same middleware.
_HEADERS = tuple(
    middleware(lambda request: None)
    for middleware in (CommonMiddleware, SecurityMiddleware, XFrameOptionsMiddleware)
)


def api_key(request: HttpRequest) -> str | None:
    """The controller's API key when this request is the fast path's to answer, else None."""
    meta = request.META
    if request.method != "POST" or request.path_info != PATH or meta.get("QUERY_STRING"):
        return None
    if meta.get("CONTENT_TYPE", "").lower() not in CONTENT_TYPES:
        return None
    if meta.get("HTTP_ACCEPT", "") not in ACCEPTS:
        return None
    token = bearer_token(request)
    if token is None or not token.startswith(API_KEY_PREFIX):
        return None
    if too_large(request) is not None:  # before the body is read
        return None
    if settings.SECURE_SSL_REDIRECT and not request.is_secure():
        return None
    try:
        request.get_host()
    except DisallowedHost:
        return None
    return token


def respond(request: HttpRequest) -> HttpResponse | None:
    """The answer to a gateway's telemetry post, or None to leave the request to Django."""
    if not settings.ENEXA_INGEST_FAST_PATH:
        return None
    token = api_key(request)
    if token is None:
        return None
    request_id = accept_request_id(request.META.get(REQUEST_ID_META))
    request.request_id = request_id  # type: ignore[attr-defined]
    with request_context(request_id):
        try:
            response = _ingest(request, token)
        except (OperationalError, InterfaceError) as exc:
            response = database_unavailable(request, exc)
    if response is not None:
        response[REQUEST_ID_HEADER] = request_id
    return response


def _authenticated_and_counted(
    request: HttpRequest, token: str, cost: int
) -> ControllerPrincipal | None:
    """The key's principal (also set as request.user) when it authenticates and the call fits
    its rate limit, counted; None leaves the request to the full stack, nothing counted (it
    counts a failed authentication there and answers 401, or answers 429). Raises Throttled for
    an address over its failed authentications and DomainError for one outside the allowlist."""
    ip = client_ip(request)
    cached = cached_api_key(token, client_ip=ip) if keycache.enabled() else None
    if cached is not None:
        # The key's row is in this process's cache: one Redis round trip confirms its
        # generation is still current, checks the address's failed authentications and counts
        # the call, instead of one round trip for the first two and another to count.
        request.user = cached.principal  # type: ignore[attr-defined]
        scope, ident = throttling.scope_and_ident(request, VIEW)
        try:
            wait = throttling.count_call_if_current(
                request,
                scope,
                ident,
                cost,
                generation_key=keycache.generation_key(),
                generation=cached.generation,
            )
        except throttling.NotCounted:
            del request.user  # type: ignore[attr-defined] # decided again below
        else:
            if wait is not None:
                return None
            record_key_use(cached)
            return cached.principal
    # One Redis round trip: the address's failed authentications and the key cache's
    # generation (a generation that is not there yet is created by the key check).
    generation = throttling.refuse_after_auth_failures(
        request, also=keycache.generation_key() if keycache.enabled() else None
    )
    principal = authenticate_api_key(token, client_ip=ip, generation=generation)
    if principal is None:
        return None  # the full stack counts the failure and answers 401
    request.user = principal  # type: ignore[attr-defined]
    scope, ident = throttling.scope_and_ident(request, VIEW)
    return principal if throttling.count_call(scope, ident, cost) is None else None


def _ingest(request: HttpRequest, token: str) -> HttpResponse | None:
    started = time.monotonic()
    body = request.body
    if nested_too_deeply(body):
        return None
    try:
        # Refuses what DRF's parser refuses (NaN, Infinity, not UTF-8); it also refuses a few
        # things DRF reads (numbers beyond a double, lone surrogate escapes): those are left
        # to the full stack, whose schema answers them item by item.
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    try:
        principal = _authenticated_and_counted(request, token, throttling.cost_of(data))
    except (Throttled, DomainError):
        return None
    if principal is None:
        return None
    collecting = audit.start_collecting()
    try:
        # The audit entry goes into the statement that stores the readings: one commit for both.
        call = audit.Call(
            principal=principal_label(principal),
            source_ip=client_ip(request),
            method="POST",
            path=request.path,
            query_string="",
            changes=audit.collected(),
            started=started,
        )
        with metrics.INGEST_SECONDS.labels(kind="telemetry").time():
            try:
                result = services.ingest_readings(poster_for(principal), data, call=call)
            except InvalidInput:
                result = None
    finally:
        audit.stop_collecting(collecting)
    if result is None or result.all_rejected:
        # Nothing was written: the full stack answers the 400, without counting the call again.
        request.enexa_call_counted = True  # type: ignore[attr-defined]
        return None
    count_items("telemetry", result)
    response = JsonResponse(result.as_dict(), status=201 if result.accepted else 200)
    response["Allow"] = ALLOW
    for middleware in _HEADERS:
        response = middleware.process_response(request, response)
    if not result.audited:  # nothing to store (an empty batch)
        call.record(response.status_code)
    return response

"""Middleware guarding every call of Amperio's API: the callers' allowlist, then an audit row."""

from __future__ import annotations

import logging
import time

from amperio.api import services
from amperio.api.audit import AuditCall
from amperio.api.errors import problem_response
from amperio.api.network import allowed, client_ip
from amperio.settings import get_settings
from shared.logs import REQUEST_ID_HEADER, REQUEST_ID_META, accept_request_id, request_context

logger = logging.getLogger(__name__)


def note_command(request, command_id: str | None) -> None:
    """Tell the audit row which command a call concerned (a view knows it once parsed)."""
    getattr(request, "_request", request).audit_command_id = command_id


class RequestIdMiddleware:
    """Enexa's X-Request-ID (when plausible; else a new one) on every log record of the call,
    on the answer, and in the message of the task it queues (amperio.celery's signals)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = accept_request_id(request.META.get(REQUEST_ID_META))
        with request_context(request_id):
            response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


class GuardMiddleware:
    """Outside AMPERIO_API_IP_ALLOWLIST (when set) every call is 403 before authentication;
    every call, refused or not, leaves an audit row."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.monotonic()
        settings = get_settings()
        ip = client_ip(request)
        if allowed(ip, settings.ip_allowlist):
            response = self.get_response(request)
        else:
            logger.info("refused %s %s from %s: not allowlisted", request.method, request.path, ip)
            response = problem_response(
                403, "Forbidden", "This address may not call the API.", "address_not_allowed"
            )
        command_id = getattr(request, "audit_command_id", None)
        if command_id is None and request.resolver_match is not None:
            command_id = request.resolver_match.kwargs.get("command_id")
        call = AuditCall(
            # DRF puts the authenticated principal on the Django request too.
            caller=getattr(getattr(request, "user", None), "name", None) or "anonymous",
            source_ip=ip,
            method=request.method,
            path=request.path,
            query=request.META.get("QUERY_STRING", ""),
            status=response.status_code,
            command_id=command_id,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        try:
            secrets = tuple(token.secret for token in settings.service_tokens)
            services.audit_log(settings).record(call, secrets)
        except Exception as exc:  # noqa: BLE001 - the response matters more than its audit row
            logger.warning(
                "audit row for %s %s not written: %s", call.method, call.path, type(exc).__name__
            )
        return response

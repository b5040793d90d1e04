"""Middleware writing an audit entry for every /v1/ call and every change made through the
dashboard under /app/ (after the response is built)."""

import time

from enexa.core.network import client_ip
from enexa.core.principals import principal_label

from . import services

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class AuditMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # The dashboard's reads (pages, polls every few seconds) are not API calls; what it
        # changes (a dispatched command, a password) is recorded like the API's writes.
        audited = request.path.startswith("/v1/") or (
            request.path.startswith("/app/") and request.method in WRITE_METHODS
        )
        if not audited:
            return self.get_response(request)
        started = time.monotonic()
        token = services.start_collecting() if request.method in WRITE_METHODS else None
        try:
            response = self.get_response(request)
        finally:
            changes = services.stop_collecting(token) if token is not None else []
        if token is not None and not changes and request.resolver_match is not None:
            changes = services.url_targets(request.resolver_match.kwargs)
        services.Call(
            # DRF sets request.user on the Django request too once it authenticated the call.
            principal=principal_label(getattr(request, "user", None)),
            source_ip=client_ip(request),
            method=request.method,
            path=request.path,
            query_string=request.META.get("QUERY_STRING", ""),
            changes=changes,
            started=started,
        ).record(response.status_code)
        return response

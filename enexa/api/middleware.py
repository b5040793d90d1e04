"""Middleware: a database outage answers 503 with Retry-After instead of a stack trace; NUL
characters are refused with 400 before they reach the database."""

import json
import logging

from django.db import DatabaseError, InterfaceError, OperationalError

from .errors import problem_response

logger = logging.getLogger(__name__)

RETRY_AFTER_S = "5"


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            return self.get_response(request)
        except (OperationalError, InterfaceError) as exc:
            return self._unavailable(request, exc)

    def process_exception(self, request, exception):
        if isinstance(exception, (OperationalError, InterfaceError)) or (
            isinstance(exception, DatabaseError) and "connect" in str(exception).lower()
        ):
            return self._unavailable(request, exception)
        return None

    def _unavailable(self, request, exc):
        logger.error("database unavailable on %s %s: %s", request.method, request.path, exc)
        return problem_response(
            503,
            "Service unavailable",
            "The database is unreachable; retry later.",
            "database_unavailable",
            headers={"Retry-After": RETRY_AFTER_S},
        )


def _contains_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_contains_nul(item) for item in value)
    return False


def request_has_nul(request) -> bool:
    """Whether the path, query or body of an API request carries a NUL character."""
    if "\x00" in request.path or "%00" in request.META.get("QUERY_STRING", ""):
        return True
    content_type = request.META.get("CONTENT_TYPE", "")
    try:
        body = request.body
    except Exception:  # noqa: BLE001 - too big or already read: the view's own checks apply
        return False
    if "json" in content_type and b"\\u0000" in body:
        try:
            return _contains_nul(json.loads(body))
        except ValueError:
            return False  # malformed JSON: the parser answers 400 itself
    if "x-www-form-urlencoded" in content_type:
        return b"%00" in body
    return "multipart" in content_type and b"\x00" in body


class RejectNulMiddleware:
    """PostgreSQL cannot store or compare text holding NUL (it raises, which would be a 500):
    an API request carrying one is refused with 400 before any query runs."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/v1/") and request_has_nul(request):
            return problem_response(
                400, "Invalid input", "NUL characters (\\u0000) are not accepted.", "invalid"
            )
        return self.get_response(request)

"""Middleware: a database outage answers 503 with Retry-After instead of a stack trace."""
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

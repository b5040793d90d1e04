"""Middleware: a database outage answers 503 with Retry-After instead of a stack trace; hostile
input (oversized bodies, deep JSON, text no database can store) is refused before any view."""

import json
import logging
import re

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError

from shared.fields import UNSTORABLE_TEXT_ERROR, find_unstorable_text
from shared.logs import REQUEST_ID_HEADER, REQUEST_ID_META, accept_request_id, request_context

from .errors import RequestTooLarge, problem_response
from .parsers import TOO_DEEP, nested_too_deeply

logger = logging.getLogger(__name__)

RETRY_AFTER_S = "5"


class RequestIdMiddleware:
    """The caller's X-Request-ID (when plausible) or a new one: on every log record of the
    request, on the answer, and on the commands it issues (which carry it to Amperio)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = accept_request_id(request.META.get(REQUEST_ID_META))
        request.request_id = request_id
        with request_context(request_id):
            response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            return self.get_response(request)
        except (OperationalError, InterfaceError) as exc:
            return database_unavailable(request, exc)

    def process_exception(self, request, exception):
        if isinstance(exception, (OperationalError, InterfaceError)) or (
            isinstance(exception, DatabaseError) and "connect" in str(exception).lower()
        ):
            return database_unavailable(request, exception)
        return None


def database_unavailable(request, exc):
    """The 503 (with Retry-After) of a request the database could not serve."""
    logger.error("database unavailable on %s %s: %s", request.method, request.path, exc)
    return problem_response(
        503,
        "Service unavailable",
        "The database is unreachable; retry later.",
        "database_unavailable",
        headers={"Retry-After": RETRY_AFTER_S},
    )


# A JSON escape of a UTF-16 surrogate (\ud800-\udfff): cheap to look for before parsing.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
UNSTORABLE_DETAIL = "Text must not hold NUL characters (\\u0000) or lone UTF-16 surrogates."


def _invalid(detail: str, errors: dict[str, list[str]] | None = None):
    return problem_response(400, "Invalid input", detail, "invalid", errors)


def too_large(request):
    """413 when the declared body exceeds DATA_UPLOAD_MAX_MEMORY_SIZE (Django would raise
    RequestDataTooBig on reading it, answered with an HTML 400)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0  # as Django reads it: an unreadable length is no body
    if limit is None or length <= limit:
        return None
    return problem_response(
        RequestTooLarge.status,
        RequestTooLarge.title,
        f"The request body ({length} bytes) exceeds the limit of {limit} bytes.",
        RequestTooLarge.code,
    )


def _json_problem(body: bytes):
    if b"\\u0000" not in body and not SURROGATE_ESCAPE.search(body):
        return None
    if nested_too_deeply(body):  # before json.loads, whose recursion it would exhaust
        return _invalid(TOO_DEEP)
    try:
        # bytes: decoded with surrogatepass, so raw surrogate bytes are found below too
        data = json.loads(body)
    except ValueError:
        return None  # malformed JSON: the parser answers 400 itself
    path = find_unstorable_text(data)
    if path is None:
        return None
    return _invalid(UNSTORABLE_DETAIL, {path or "non_field_errors": [UNSTORABLE_TEXT_ERROR]})


def body_problem(request):
    """The 400 for a body holding NUL characters or lone surrogates in any string (with the
    field path for JSON); None when the body may go on to the view. JSON deeper than the
    parser's bound is refused here before it is parsed (the parser refuses it elsewhere)."""
    content_type = request.META.get("CONTENT_TYPE", "")
    try:
        body = request.body
    except Exception:  # noqa: BLE001 - already streamed: the view's own checks apply
        return None
    if "json" in content_type:
        return _json_problem(body)
    unstorable = (
        b"%00" in body
        if "x-www-form-urlencoded" in content_type
        else "multipart" in content_type and b"\x00" in body
    )
    return _invalid(UNSTORABLE_DETAIL) if unstorable else None


class RejectHostileInputMiddleware:
    """Refuses on /v1/, before any view runs, what would otherwise fail inside one as a 500 or
    an HTML page: a body above DATA_UPLOAD_MAX_MEMORY_SIZE (413), and text no database here
    can store (NUL, which PostgreSQL refuses, and lone UTF-16 surrogates, which UTF-8 cannot
    encode) in the path, query or body (400). JSON nesting is bounded by the parser
    (enexa.api.parsers).

    A view that checks text item by item (batch ingest, where one bad item must not cost the
    others) sets `checks_text_per_item = True`: its body is left to it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/v1/"):
            if "\x00" in request.path or "%00" in request.META.get("QUERY_STRING", ""):
                return _invalid(UNSTORABLE_DETAIL)
            refused = too_large(request)
            if refused is not None:
                return refused
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if not request.path.startswith("/v1/"):
            return None
        if getattr(getattr(view_func, "cls", None), "checks_text_per_item", False):
            return None
        return body_problem(request)

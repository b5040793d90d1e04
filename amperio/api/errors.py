"""RFC 9457 problem details for every error of Amperio's API."""

from __future__ import annotations

from django.http import Http404, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://amperio.io/problems/"


def _problem_body(
    status: int, title: str, detail: str, code: str, errors: dict[str, list[str]] | None = None
) -> dict[str, object]:
    body: dict[str, object] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return body


def problem(
    status: int,
    title: str,
    detail: str,
    code: str,
    errors: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = _problem_body(status, title, detail, code, errors)
    return Response(body, status=status, content_type=PROBLEM_CONTENT_TYPE, headers=headers)


def problem_exception_handler(exc, context):
    """DRF exception handler: DRF's errors leave as application/problem+json.

    Always JSON, whatever the view renders otherwise: the schema (YAML) and docs (HTML) views
    would put a 429 in their own format."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = exception_handler(exc, context)
    if response is None:
        return None
    errors = None
    if isinstance(exc, exceptions.ValidationError):
        errors = {"non_field_errors": [str(exc.detail)]}
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    problem_json = problem_response(
        response.status_code,
        str(getattr(exc, "default_detail", "Error")),
        str(detail),
        getattr(exc, "default_code", "error"),
        errors,
    )
    for name, value in response.items():  # WWW-Authenticate, Retry-After
        if name.lower() != "content-type":
            problem_json[name] = value
    return problem_json


def problem_response(
    status: int, title: str, detail: str, code: str, errors: dict[str, list[str]] | None = None
) -> JsonResponse:
    """Problem details outside DRF's rendering (middleware, exceptions, Django's handlers)."""
    body = _problem_body(status, title, detail, code, errors)
    return JsonResponse(body, status=status, content_type=PROBLEM_CONTENT_TYPE)


def not_found_view(request, exception=None):
    """handler404: problem details, never Django's HTML page."""
    return problem_response(404, "Not found", "Not found.", "not_found")


def server_error_view(request):
    """handler500: never a stack trace."""
    return problem_response(500, "Server error", "An internal error occurred.", "server_error")

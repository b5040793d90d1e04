"""The domain errors services raise; enexa.api.errors maps each to a problem response."""

from http import HTTPStatus


class DomainError(Exception):
    """An error a service raises; the API maps it to a problem response of `status`."""

    status = HTTPStatus.BAD_REQUEST.value
    code = "invalid"
    title = "Invalid request"

    def __init__(self, detail: str, errors: dict[str, list[str]] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or {}


class InvalidInput(DomainError):
    """Input that is well-formed but breaks a rule; `errors` maps field -> messages."""


class RequestTooLarge(DomainError):
    """A request body above DATA_UPLOAD_MAX_MEMORY_SIZE."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE.value
    code = "request_too_large"
    title = "Request body too large"


class NotFoundError(DomainError):
    status = HTTPStatus.NOT_FOUND.value
    code = "not_found"
    title = "Not found"


class ConflictError(DomainError):
    status = HTTPStatus.CONFLICT.value
    code = "conflict"
    title = "Conflict"


class PreconditionFailed(DomainError):
    status = HTTPStatus.PRECONDITION_FAILED.value
    code = "precondition_failed"
    title = "Precondition failed"


class InvalidCredentials(DomainError):
    """A secret that is unknown, expired, used up or not valid for what it is presented for."""

    status = HTTPStatus.UNAUTHORIZED.value
    code = "authentication_failed"
    title = "Authentication failed"


class ForbiddenError(DomainError):
    """An authenticated caller that may not do this (e.g. from an address not allowed)."""

    status = HTTPStatus.FORBIDDEN.value
    code = "permission_denied"
    title = "Forbidden"

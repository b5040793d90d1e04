"""ETag helpers: versions (or digests) as strong ETags, `If-Match` / `If-None-Match` parsed
once."""

from django.http import HttpRequest

from .errors import DomainError


class PreconditionRequired(DomainError):
    """A write without `If-Match` (428), so a client cannot overwrite a change it has not seen."""

    status = 428
    code = "precondition_required"
    title = "Precondition required"


def etag(version: int | str) -> str:
    return f'"{version}"'


def _tags(header: str) -> list[str]:
    return [tag.strip().removeprefix("W/").strip('"') for tag in header.split(",") if tag.strip()]


def none_match(request: HttpRequest, version: int | str) -> bool:
    """`If-None-Match` names `version` (or `*`): the client's copy is current, answer 304. Weak
    tags (`W/"5"`, as a compressing proxy passes them on) compare by their value."""
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    tags = _tags(header)
    return "*" in tags or str(version) in tags


def required_if_match(request: HttpRequest) -> int | None:
    """The version named by `If-Match`; None for `*` (any). Missing: 428. A value that is no
    version can match nothing: -1, so the write answers 412."""
    header = request.headers.get("If-Match")
    if not header:
        raise PreconditionRequired(
            "Send If-Match with the current version (the ETag of the configuration)."
        )
    tags = _tags(header)
    if "*" in tags:
        return None
    if len(tags) == 1 and tags[0].isdigit():
        return int(tags[0])
    return -1

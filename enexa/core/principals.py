"""Who is calling: a user (JWT) or a controller (API key); which sites each may see is
enexa.core.visibility."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# A controller key is `enx_<lookup>.<secret>` (issued by enexa.provisioning.services); the
# authentication class claims only tokens with this prefix.
API_KEY_PREFIX = "enx_"


@dataclass(frozen=True)
class ControllerPrincipal:
    """`request.user` for a call made with a controller's API key."""

    controller_pk: int
    controller_code: str
    site_pk: int
    site_code: str
    key_prefix: str

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    @property
    def pk(self) -> None:  # not a Django user: nothing may store it as one
        return None

    def __str__(self) -> str:
        return f"controller:{self.controller_code}"


def is_controller(user: Any) -> bool:
    return isinstance(user, ControllerPrincipal)


def is_staff_user(user: Any) -> bool:
    return bool(user and getattr(user, "is_authenticated", False) and user.is_staff)


def principal_label(user: Any) -> str:
    """How the audit log and the logs name a caller (never a secret)."""
    if is_controller(user):
        return str(user)
    if user and getattr(user, "is_authenticated", False):
        return f"user:{user.get_username()}"
    return "anonymous"

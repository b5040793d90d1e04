"""Who is calling: a user (JWT) or a controller (API key), and which sites each may see."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


def visible_site_pks(user: Any) -> set[int] | None:
    """The primary keys of the sites `user` may see; None means every site (staff)."""
    if is_controller(user):
        return {user.site_pk}
    if not user or not user.is_authenticated:
        return set()
    if user.is_staff:
        return None
    from enexa.registry.models import SiteMembership

    return set(SiteMembership.objects.filter(user=user).values_list("site_id", flat=True))


def principal_label(user: Any) -> str:
    """How the audit log and the logs name a caller (never a secret)."""
    if is_controller(user):
        return str(user)
    if user and getattr(user, "is_authenticated", False):
        return f"user:{user.get_username()}"
    return "anonymous"

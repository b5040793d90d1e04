"""Registry services: controller codes, asset assignment rules and safe deletion."""

import re

from django.db import models
from django.db.models.deletion import ProtectedError, RestrictedError

from enexa.core.errors import ConflictError

from .models import Controller, Equipment, Site


def next_code(model: type[models.Model], prefix: str, width: int = 3) -> str:
    """The next free code of `model` with `prefix` (CTRL001, CTRL002, ...)."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)$")
    numbers = [
        int(match.group(1))
        for code in model.objects.filter(code__startswith=prefix).values_list("code", flat=True)
        if (match := pattern.match(code))
    ]
    return f"{prefix}{max(numbers, default=0) + 1:0{width}d}"


def next_controller_code() -> str:
    return next_code(Controller, "CTRL")


def foreign_assets(site: Site, assets) -> list[str]:
    """The codes among `assets` that are not equipment of `site` (a controller drives only its
    own site's equipment)."""
    return sorted(asset.code for asset in assets if asset.site_id != site.pk)


def delete_registry_object(obj: Site | Controller | Equipment) -> None:
    """Delete `obj`, or raise ConflictError naming what still depends on it."""
    try:
        obj.delete()
    except ProtectedError as exc:
        raise ConflictError(
            f"{obj} is still in use by: {blockers(exc.protected_objects)}."
        ) from exc
    except RestrictedError as exc:
        raise ConflictError(
            f"{obj} is still in use by: {blockers(exc.restricted_objects)}."
        ) from exc


def blockers(objects) -> str:
    names = sorted({str(o) for o in objects})
    return ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")

"""The dashboard's small template tags: states as a word beside their colour (never colour
alone), and powers in words (charging, discharging, importing)."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

register = template.Library()

# Mode words the gateway reports, and the badge class each gets.
MODE_CLASSES = {"auto": "ok", "normal": "ok", "manual": "info", "autonomous": "warn", "safe": "bad"}
# Within this many kW a battery counts as idle.
IDLE_KW = 0.05


def _number(value: object) -> float | None:
    """A value the template may hand over as "" (a missing reading) as None."""
    return float(value) if isinstance(value, int | float) else None


@register.simple_tag
def status_badge(online: bool) -> str:
    if online:
        return mark_safe('<span class="badge ok" data-status="online">● Online</span>')  # noqa: S308
    return mark_safe('<span class="badge bad" data-status="offline">○ Offline</span>')  # noqa: S308


@register.simple_tag
def mode_badge(mode: str) -> str:
    if not mode:
        return mark_safe('<span class="badge muted">unknown</span>')  # noqa: S308
    return format_html(
        '<span class="badge {}" data-mode="{}">{}</span>',
        MODE_CLASSES.get(mode, "info"),
        mode,
        mode,
    )


@register.simple_tag
def battery_words(power_kw: float | None) -> str:
    """`+` discharges, `-` charges (the telemetry's sign)."""
    power_kw = _number(power_kw)
    if power_kw is None:
        return "—"
    if abs(power_kw) < IDLE_KW:
        return format_html('<span data-kw="{}">idle, 0.0 kW</span>', power_kw)
    word = "discharging" if power_kw > 0 else "charging"
    return format_html('<span data-kw="{}">{} {} kW</span>', power_kw, word, f"{abs(power_kw):.1f}")


@register.simple_tag
def grid_use(import_kw: float | None, limit_kw: float | None) -> str:
    """Import against the connection limit, with the share and a word when near or over it."""
    import_kw, limit_kw = _number(import_kw), _number(limit_kw)
    if import_kw is None:
        return format_html("— / {} kW", f"{limit_kw:g}" if limit_kw else "?")
    if not limit_kw:
        return format_html("{} kW", f"{import_kw:.1f}")
    share = 100.0 * import_kw / limit_kw
    level, word = ("bad", "over limit") if share > 100 else ("warn", "near limit")
    if share < 90:
        level, word = "ok", ""
    return format_html(
        '<meter min="0" max="{}" value="{}" title="{}%"></meter> {} / {} kW '
        '<span class="small {}">{}%{}</span>',
        f"{limit_kw:g}",
        f"{max(import_kw, 0.0):.1f}",
        f"{share:.0f}",
        f"{import_kw:.1f}",
        f"{limit_kw:g}",
        level,
        f"{share:.0f}",
        f" {word}" if word else "",
    )


@register.filter
def one_decimal(value: float | None) -> str:
    """1 decimal, or a dash: floatformat's locale handling costs more than 500 rows afford."""
    value = _number(value)
    return "—" if value is None else f"{value:.1f}"


@register.filter
def ago(value: datetime | None, now: datetime) -> str:
    """How long before `now`, coarsely ("40 s", "5 min", "3 h", "2 d"): cheaper than
    timesince for a fleet of rows."""
    if value is None:
        return ""
    seconds = max(0, int((now - value).total_seconds()))
    for unit_s, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= unit_s:
            return f"{seconds // unit_s} {unit}"
    return f"{seconds} s"


@register.filter
def kw(value: float | None) -> str:
    value = _number(value)
    return "—" if value is None else f"{value:.1f} kW"

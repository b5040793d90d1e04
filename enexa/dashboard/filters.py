"""The fleet's filter and sort, applied to the rows services.fleet_rows read."""

from __future__ import annotations

from django import forms

from .choices import FleetSort, FleetStatus
from .services import FleetRow


class FleetFilterForm(forms.Form):
    """`?q=&status=&sort=` of the fleet page; anything unknown falls back to the default."""

    q = forms.CharField(required=False, max_length=100, label="Search")
    status = forms.ChoiceField(choices=FleetStatus.choices, required=False, label="Show")
    sort = forms.ChoiceField(choices=FleetSort.choices, required=False, label="Sort")

    def filtered(self, rows: list[FleetRow]) -> list[FleetRow]:
        data = self.cleaned_data if self.is_valid() else {}
        needle = (data.get("q") or "").strip().lower()
        status = data.get("status") or FleetStatus.ALL
        if needle:
            rows = [r for r in rows if needle in r.code.lower() or needle in r.name.lower()]
        if status == FleetStatus.ONLINE:
            rows = [r for r in rows if r.online]
        elif status == FleetStatus.OFFLINE:
            rows = [r for r in rows if not r.online]
        elif status == FleetStatus.PROBLEMS:
            rows = [r for r in rows if r.problems]
        return sort_rows(rows, data.get("sort") or FleetSort.CODE)


def sort_rows(rows: list[FleetRow], sort: str) -> list[FleetRow]:
    """Rows in the order asked; ties (and missing values, last) by site code."""
    rows = sorted(rows, key=lambda r: r.code)
    if sort == FleetSort.PROBLEMS:
        return sorted(rows, key=lambda r: -r.problems)
    if sort == FleetSort.STATUS:
        return sorted(rows, key=lambda r: r.online)
    if sort == FleetSort.SOC:
        return sorted(rows, key=lambda r: (r.soc_pct is None, r.soc_pct or 0.0))
    if sort == FleetSort.GRID:
        return sorted(rows, key=lambda r: (r.grid_use_pct is None, -(r.grid_use_pct or 0.0)))
    return rows

"""Alerts' Celery tasks: the periodic evaluation of every rule, and one site's after an event."""

from __future__ import annotations

from enexa.celery import app

from . import services


@app.task
def evaluate_alerts() -> dict[str, int]:
    """Beat: every rule over every site; alerts opened, updated and resolved to match."""
    return services.evaluate()


@app.task
def evaluate_site(site_pk: int, rules: list[str]) -> dict[str, int]:
    """After an event that bears on `rules`: those rules over this one site."""
    return services.evaluate(rules=rules, site_pks={site_pk})

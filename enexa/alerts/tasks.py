"""Alerts' Celery tasks: the periodic evaluation of every rule, and one site's after an event."""

from __future__ import annotations

from enexa.celery import app

from . import services


@app.task
def evaluate_alerts(rules: list[str] | None = None) -> dict[str, int]:
    """Beat: every rule over every site; alerts opened, updated and resolved to match. After
    a gateway health poll: the rules reading it (`rules`), over every site."""
    return services.evaluate(rules=rules)


@app.task
def evaluate_site(site_pk: int, rules: list[str]) -> dict[str, int]:
    """After an event that bears on `rules`: those rules over this one site."""
    return services.evaluate(rules=rules, site_pks={site_pk})

"""The optimizer's Celery tasks: re-plan one site, the periodic fleet re-plan, the SOC check."""

from __future__ import annotations

from django.conf import settings

from enexa.celery import PERIODIC_QUEUE, app

from . import services
from .choices import PlanReason


@app.task
def replan_site(site_pk: int, reason: str, since: str | None = None) -> str | None:
    """Re-plan one controlled site; a plan made since `since` makes a repeat do nothing."""
    plan = services.replan_site(site_pk, reason, since)
    return plan.code if plan else None


@app.task
def replan_due_sites() -> int:
    """Beat: one `replan_site` (reason `scheduled`) per due site, each expiring before the
    next run, so a worker that was down does not work through stale re-plans."""
    interval_s = settings.ENEXA_OPTIMIZER_REPLAN_INTERVAL_S
    due = services.sites_due()
    for site_pk in due:
        replan_site.apply_async(
            (site_pk, PlanReason.SCHEDULED, None), queue=PERIODIC_QUEUE, expires=interval_s
        )
    return len(due)


@app.task
def check_soc_drift() -> list[str]:
    """Beat: a `soc_drift` re-plan of each site whose SOC left its plan by the threshold."""
    return services.check_drift()


@app.task
def prune_plans() -> int:
    """Beat, daily: plans past ENEXA_OPTIMIZER_PLAN_RETENTION_DAYS deleted (a site's newest
    kept)."""
    return services.prune_plans()

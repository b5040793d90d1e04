"""Planning: prices in and out, a site's problem built from its registry, configuration,
telemetry and prices, solved into an immutable plan, dispatched, and re-planned (MPC).

Load (what the site consumes: chargers and everything else) is derived from the grid and the
battery, which every reading has, rather than from the chargers' own meters, which miss the
rest of the site: load = grid import - grid export + battery power (+ discharge).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import uuid
import zoneinfo
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, Max, OuterRef, QuerySet, Subquery
from django.dispatch import Signal
from django.utils import timezone

from enexa.configs.limits import fill_open_settings, limits_for_site
from enexa.configs.models import SiteConfig
from enexa.core.errors import DomainError, InvalidInput
from enexa.core.metrics import SOLVER_SECONDS
from enexa.dispatch import tasks as dispatch_tasks
from enexa.dispatch.services import issue_command, supersede_undelivered
from enexa.registry.models import Site
from enexa.telemetry.models import TelemetryReading
from enexa.telemetry.services import SlotStats, slot_stats
from shared.dispatch import MAX_SLOTS
from shared.errors import SchemaError
from shared.fields import format_timestamp
from shared.site_config import merged

from . import forecast, solver
from .choices import PlanReason
from .models import Plan, PlanRelease, PriceSlot
from .problem import Battery, Problem, Solution
from .schema import PriceSchedule

logger = logging.getLogger(__name__)

SLOT_MINUTES = (5, 10, 15, 30, 60)
MAX_HORIZON_H = 168
APPLY_SCHEDULE = "apply_schedule"

# Sent after a plan is stored and committed (`plan=<Plan>`): webhooks (`plan.created`),
# metrics and the like connect here rather than into the planning code.
plan_created = Signal()
# Sent after a release is stored and committed (`release=<PlanRelease>`): webhooks
# (`plan.released`).
plan_released = Signal()


class PricesMissing(DomainError):
    status = 422
    code = "prices_missing"
    title = "No prices for the horizon"


class NoBattery(DomainError):
    status = 422
    code = "no_battery"
    title = "No battery to plan"


class NotControlled(DomainError):
    """The site is not under the optimizer's control (never dispatched, or released)."""

    status = 404
    code = "not_found"
    title = "Not found"


# --- prices -------------------------------------------------------------------------------------


def replace_prices(site: Site, payload: Any) -> PriceSchedule:
    """Store the prices of `payload` (the `PUT .../prices` body), replacing every price slot of
    the site that overlaps the range it covers; the sites under the optimizer's control are
    re-planned once this commits (reason `prices`)."""
    try:
        schedule = PriceSchedule.from_dict(payload)
    except SchemaError as exc:
        raise InvalidInput("The prices are invalid.", exc.errors) from exc
    with transaction.atomic():
        PriceSlot.objects.filter(site=site, start__lt=schedule.end, end__gt=schedule.start).delete()
        PriceSlot.objects.bulk_create(
            PriceSlot(
                site=site,
                start=slot.start,
                end=slot.end,
                import_price=slot.import_price,
                export_price=slot.export_price,
                currency=schedule.currency,
            )
            for slot in schedule.slots
        )
        request_replan(site, PlanReason.PRICES)
    return schedule


def prices_between(site: Site, start: datetime, end: datetime) -> dict[str, Any]:
    """The site's stored prices overlapping [start, end), in the `PUT` shape (currency of the
    newest slot; "" when there is none)."""
    rows = list(PriceSlot.objects.filter(site=site, start__lt=end, end__gt=start).order_by("start"))
    currency = max(rows, key=lambda r: r.updated_at).currency if rows else ""
    return {
        "currency": currency,
        "slots": [
            {
                "start": format_timestamp(r.start),
                "end": format_timestamp(r.end),
                "import_price": r.import_price,
                "export_price": r.export_price,
            }
            for r in rows
        ],
    }


def tariff_price(tariff: dict[str, Any], at: datetime, tz: zoneinfo.ZoneInfo) -> tuple[Any, Any]:
    """(import, export) price per kWh the configured time-of-use tariff gives at `at`: the
    peak band's where it is set and `at`'s local hour falls in [peak_from_hour, peak_to_hour)
    (wrapping midnight when from > to), else the base prices; None where nothing is set."""
    buy, sell = tariff.get("import_price"), tariff.get("export_price")
    start, end = tariff.get("peak_from_hour"), tariff.get("peak_to_hour")
    if start is not None and end is not None:
        hour = at.astimezone(tz).hour
        in_peak = start <= hour < end if start <= end else (hour >= start or hour < end)
        if in_peak:
            peak_buy, peak_sell = tariff.get("peak_import_price"), tariff.get("peak_export_price")
            buy = peak_buy if peak_buy is not None else buy
            sell = peak_sell if peak_sell is not None else sell
    return buy, sell


def slot_prices(
    site: Site, starts: list[datetime], slot_minutes: int, tariff: dict[str, Any]
) -> tuple[list[float], list[float], str]:
    """(import prices, export prices, currency) per slot: the stored prices weighted by how
    much of the slot each covers, the tariff for what none covers. Raises PricesMissing when
    neither prices a slot."""
    step = timedelta(minutes=slot_minutes)
    rows = list(
        PriceSlot.objects.filter(site=site, start__lt=starts[-1] + step, end__gt=starts[0])
        .order_by("start")
        .values_list("start", "end", "import_price", "export_price", "currency")
    )
    tz = zoneinfo.ZoneInfo(site.timezone)
    buys, sells = [], []
    i = 0
    for start in starts:
        end = start + step
        while i < len(rows) and rows[i][1] <= start:
            i += 1
        covered_s, buy, sell = 0.0, 0.0, 0.0
        j = i
        while j < len(rows) and rows[j][0] < end:
            part = (min(end, rows[j][1]) - max(start, rows[j][0])).total_seconds()
            covered_s += part
            buy += rows[j][2] * part
            sell += rows[j][3] * part
            j += 1
        rest_s = step.total_seconds() - covered_s
        if rest_s > 1e-6:
            t_buy, t_sell = tariff_price(tariff, start, tz)
            if t_buy is None:
                raise PricesMissing(
                    f"No price for {format_timestamp(start)}: put prices for the horizon or set "
                    "a tariff in the site configuration."
                )
            buy += t_buy * rest_s
            sell += (t_sell if t_sell is not None else 0.0) * rest_s
        buys.append(buy / step.total_seconds())
        sells.append(sell / step.total_seconds())
    currency = rows[-1][4] if rows else ""
    return buys, sells, currency


# --- the problem --------------------------------------------------------------------------------


def site_settings(site: Site, limits: dict[str, Any]) -> dict[str, Any]:
    """The site-level effective settings (defaults, the site's document, open values from
    the equipment limits), as a controller without overrides gets them."""
    document = SiteConfig.objects.filter(site=site).values_list("settings", flat=True).first()
    return fill_open_settings(merged(document or {}), limits)


def slot_starts(now: datetime, slot_minutes: int, horizon_h: int) -> list[datetime]:
    """The starts of the horizon's slots: the first is the slot `now` falls in (aligned to the
    epoch, as telemetry buckets are)."""
    seconds = slot_minutes * 60
    first = datetime.fromtimestamp(math.floor(now.timestamp() / seconds) * seconds, tz=UTC)
    return [first + timedelta(seconds=seconds * k) for k in range(horizon_h * 60 // slot_minutes)]


def _load_kw(slot: SlotStats) -> float:
    """The slot's average load: grid import - grid export + battery power (+ discharge)."""
    return (
        (slot.avg("grid_import_kw") or 0.0)
        - (slot.avg("grid_export_kw") or 0.0)
        + (slot.avg("battery_power_kw") or 0.0)
    )


def load_history(site: Site, before: datetime, slot_minutes: int) -> list[tuple[datetime, float]]:
    """(slot start, measured load kW) per slot over the last ENEXA_OPTIMIZER_FORECAST_WEEKS."""
    since = before - timedelta(weeks=settings.ENEXA_OPTIMIZER_FORECAST_WEEKS)
    return [
        (slot.start, _load_kw(slot))
        for slot in slot_stats(site.pk, since, before, slot_minutes * 60)
    ]


def measured_soc(site: Site) -> tuple[float | None, datetime | None]:
    """The SOC of the site's newest reading that has one, and its time."""
    row = (
        TelemetryReading.objects.filter(site=site, battery_soc_pct__isnull=False)
        .order_by("-timestamp")
        .values_list("battery_soc_pct", "timestamp")
        .first()
    )
    return (row[0], row[1]) if row else (None, None)


def build_problem(
    site: Site, *, horizon_h: int, slot_minutes: int, now: datetime
) -> tuple[Problem, list[datetime], dict[str, Any]]:
    """The site's planning problem from `now`: (problem, slot starts, context for the record:
    currency and where the SOC came from)."""
    limits = limits_for_site(site)
    config = site_settings(site, limits)
    equipment, battery_cfg = limits["battery"], config["battery"]
    if not equipment["capacity_kwh"] or not (
        battery_cfg["max_charge_kw"] or battery_cfg["max_discharge_kw"]
    ):
        raise NoBattery(f"{site.code} has no battery with capacity and power in the registry.")
    battery = Battery(
        capacity_kwh=equipment["capacity_kwh"],
        max_charge_kw=battery_cfg["max_charge_kw"],
        max_discharge_kw=battery_cfg["max_discharge_kw"],
        round_trip_efficiency=settings.ENEXA_OPTIMIZER_ROUND_TRIP_EFFICIENCY,
        soc_min_pct=battery_cfg["soc_min_pct"],
        soc_max_pct=battery_cfg["soc_max_pct"],
        reserve_pct=battery_cfg["reserve_pct"],
    )
    starts = slot_starts(now, slot_minutes, horizon_h)
    tariff = config.get("tariff") or {}
    buys, sells, currency = slot_prices(site, starts, slot_minutes, tariff)
    soc, soc_at = measured_soc(site)
    history = load_history(site, starts[0], slot_minutes)
    load = forecast.forecast_load(
        history,
        starts[0],
        len(starts),
        slot_minutes,
        weeks=settings.ENEXA_OPTIMIZER_FORECAST_WEEKS,
    )
    grid_kw = config["grid"]["limit_kw"]
    problem = Problem(
        slot_minutes=slot_minutes,
        load_kw=tuple(round(x, 3) for x in load),
        import_price=tuple(round(x, 6) for x in buys),
        export_price=tuple(round(x, 6) for x in sells),
        # No reading yet: the plan starts from the reserve, and says so in its inputs.
        soc_pct=soc if soc is not None else battery.reserve_pct,
        battery=battery,
        # The connection limit bounds both directions; no separate export limit is configured.
        grid_import_limit_kw=grid_kw,
        grid_export_limit_kw=grid_kw,
        demand_charge_per_kw=tariff.get("demand_charge_per_kw") or 0.0,
        cycle_cost_per_kwh=settings.ENEXA_OPTIMIZER_CYCLE_COST_PER_KWH,
    )
    context = {
        "currency": currency,
        "soc_measured_at": format_timestamp(soc_at) if soc_at else None,
    }
    return problem, starts, context


def problem_inputs(problem: Problem, starts: list[datetime], context: dict) -> dict[str, Any]:
    """What a plan stores to be reproduced: the Problem as plain JSON, the first slot start
    and the context; `problem_from_inputs` reads it back."""
    return {
        "problem": asdict(problem),
        "start": format_timestamp(starts[0]),
        **context,
    }


def problem_from_inputs(inputs: dict[str, Any]) -> Problem:
    """The Problem a plan was solved from (for reproducing it)."""
    data = dict(inputs["problem"])
    data["battery"] = Battery(**data["battery"])
    for name in ("load_kw", "import_price", "export_price"):
        data[name] = tuple(data[name])
    return Problem(**data)


def digest(inputs: dict[str, Any]) -> str:
    """SHA-256 of the inputs as canonical JSON."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# --- plans --------------------------------------------------------------------------------------


def _check_shape(horizon_h: int, slot_minutes: int) -> None:
    errors = {}
    if not 1 <= horizon_h <= MAX_HORIZON_H:
        errors["horizon_h"] = [f"Must be between 1 and {MAX_HORIZON_H}."]
    if slot_minutes not in SLOT_MINUTES:
        errors["slot_minutes"] = ["Must be one of: " + ", ".join(map(str, SLOT_MINUTES)) + "."]
    elif horizon_h * 60 // slot_minutes > MAX_SLOTS:
        errors["slot_minutes"] = [f"At most {MAX_SLOTS} slots: a longer slot for this horizon."]
    if errors:
        raise InvalidInput("The plan request is invalid.", errors)


def _slot_rows(
    problem: Problem, solution: Solution, starts: list[datetime]
) -> list[dict[str, Any]]:
    step = timedelta(minutes=problem.slot_minutes)
    return [
        {
            "start": format_timestamp(start),
            "end": format_timestamp(start + step),
            "battery_power_kw": round(solution.battery_power_kw[k], 3),
            "soc_pct": round(solution.soc_pct[k], 3),
            "grid_import_kw": round(solution.grid_import_kw[k], 3),
            "grid_export_kw": round(solution.grid_export_kw[k], 3),
            "import_price": problem.import_price[k],
            "export_price": problem.export_price[k],
            "load_kw": problem.load_kw[k],
        }
        for k, start in enumerate(starts)
    ]


def _schedule_params(problem: Problem, slots: list[dict[str, Any]]) -> dict[str, Any]:
    """`apply_schedule` params: each slot's battery power, within the configured limits (a
    rounding beyond them would have the gateway refuse the whole schedule)."""
    battery = problem.battery
    return {
        "slots": [
            {
                "start": slot["start"],
                "end": slot["end"],
                "power_kw": min(
                    battery.max_discharge_kw, max(-battery.max_charge_kw, slot["battery_power_kw"])
                ),
            }
            for slot in slots
        ]
    }


def create_plan(
    site: Site,
    *,
    reason: str = PlanReason.MANUAL,
    horizon_h: int | None = None,
    slot_minutes: int | None = None,
    dispatch: bool = True,
    by: str = "optimizer",
    now: datetime | None = None,
    require_control: bool = False,
) -> Plan:
    """Plan the site's battery from now: build the problem, solve it, store the plan, and with
    `dispatch` issue it as an `apply_schedule` command (delivered once this commits; older
    undelivered schedules of the site are superseded, never sent after it).

    With `require_control` (the automatic re-plans) nothing is stored when the site is not
    under the optimizer's control once its lock is held (NotControlled): a release made while
    this one solved stands, and no schedule of this plan follows its command."""
    now = now or timezone.now()
    horizon_h = horizon_h or settings.ENEXA_OPTIMIZER_HORIZON_H
    slot_minutes = slot_minutes or settings.ENEXA_OPTIMIZER_SLOT_MINUTES
    _check_shape(horizon_h, slot_minutes)
    problem, starts, context = build_problem(
        site, horizon_h=horizon_h, slot_minutes=slot_minutes, now=now
    )
    with SOLVER_SECONDS.time():
        solution = solver.solve(problem)
    inputs = problem_inputs(problem, starts, context)
    slots = _slot_rows(problem, solution, starts)
    with transaction.atomic():
        _lock(site)
        # Whether the site is under control is read with the previous plan, once the lock is
        # held (a statement of its own: it sees a release committed meanwhile).
        controlled = Exists(_controlling(Plan.objects.filter(site=site)))
        previous = (
            Plan.objects.filter(site=site)
            .annotate(controlled=controlled)
            .order_by("-version")
            .only("version", "slots", "slot_minutes", "site_id")  # not the inputs: large
            .first()
        )
        if require_control and not (previous and previous.controlled):  # type: ignore[attr-defined]
            raise NotControlled(f"{site.code} was released from the optimizer's control.")
        code = f"plan_{uuid.uuid4().hex[:20]}"
        end_at = starts[-1] + timedelta(minutes=slot_minutes)
        command_id = _dispatch(site, code, problem, slots, end_at, by, now) if dispatch else ""
        plan = Plan.objects.create(
            code=code,
            site=site,
            version=previous.version + 1 if previous else 1,
            created_at=now,
            created_by=by[:150],
            reason=reason,
            status=solution.status,
            slot_minutes=slot_minutes,
            start_at=starts[0],
            end_at=end_at,
            currency=context["currency"],
            slots=slots,
            cost_total=round(solution.cost, 4),
            cost_baseline=round(solution.baseline_cost, 4),
            violations=[
                {
                    "kind": v.kind,
                    "start": format_timestamp(starts[v.slot]),
                    "amount": round(v.amount, 3),
                }
                for v in solution.violations
            ],
            solve_ms=round(solution.solve_ms, 3),
            dispatched=dispatch,
            command_id=command_id,
            inputs=inputs,
            inputs_digest=digest(inputs),
            previous_forecast_error_kw=_forecast_error(previous, now) if previous else None,
        )
        transaction.on_commit(lambda: on_plan_created(plan))
    logger.info(
        "plan %s v%s for %s (%s): %s, cost %.2f vs %.2f",
        plan.code,
        plan.version,
        site.code,
        reason,
        plan.status,
        plan.cost_total,
        plan.cost_baseline,
    )
    return plan


def _lock(site: Site) -> None:
    """One writer of the site's plans and releases at a time (until the transaction ends), so
    versions follow each other and a release is never overtaken by a re-plan."""
    Site.objects.select_for_update().filter(pk=site.pk).values_list("pk").first()


def _dispatch(
    site: Site,
    code: str,
    problem: Problem,
    slots: list[dict[str, Any]],
    end_at: datetime,
    by: str,
    now: datetime,
) -> str:
    """Issue plan `code` as the site's `apply_schedule`; returns the command id."""
    return _issue_schedule(
        site, f"plan {code}", code, _schedule_params(problem, slots), end_at, by, now
    )


def _issue_schedule(
    site: Site,
    what: str,
    command_id: str,
    params: dict[str, Any],
    end_at: datetime,
    by: str,
    now: datetime,
) -> str:
    """Issue `params` as the site's `apply_schedule` (`command_id` is its idempotency key),
    superseding the site's schedules not yet delivered; delivered once this commits. `what`
    names it in the superseded ones' detail. Returns the command id."""
    supersede_undelivered(site, APPLY_SCHEDULE, f"Superseded by {what} before delivery.")
    command, _ = issue_command(
        site=site,
        command=APPLY_SCHEDULE,
        params=params,
        created_by=by,
        valid_until=end_at,
        command_id=command_id,
        now=now,
    )
    dispatch_tasks.deliver_command.delay_on_commit(command.command_id)
    return command.command_id


def on_plan_created(plan: Plan) -> None:
    """After a plan is stored and committed: tell whoever listens (`plan_created`)."""
    plan_created.send(sender=Plan, plan=plan)


def _forecast_error(previous: Plan, now: datetime) -> float | None:
    """The previous plan's forecast against the load measured over its slots that have ended."""
    planned = [s for s in previous.slots if s.get("load_kw") is not None]
    ended = [s for s in planned if datetime.fromisoformat(s["end"]) <= now]
    if not ended:
        return None
    seconds = previous.slot_minutes * 60
    first, last = (
        datetime.fromisoformat(ended[0]["start"]),
        datetime.fromisoformat(ended[-1]["end"]),
    )
    measured = {
        slot.start: _load_kw(slot) for slot in slot_stats(previous.site_id, first, last, seconds)
    }
    # Slots without a reading (an outage) are left out rather than counted as no load.
    pairs = [
        (s["load_kw"], measured[start])
        for s in ended
        if (start := datetime.fromisoformat(s["start"])) in measured
    ]
    if not pairs:
        return None
    error = forecast.forecast_error([f for f, _ in pairs], [m for _, m in pairs])
    return round(error.mae_kw, 3)


def plans_of(site: Site):
    """The site's plans, newest first."""
    return Plan.objects.filter(site=site).order_by("-version")


def plan_in_force(site: Site, *, now: datetime | None = None) -> Plan | None:
    """The plan the site follows now: its newest dispatched plan, while its horizon lasts and
    unless the site was released since it was made (one query)."""
    now = now or timezone.now()
    plan = (
        Plan.objects.filter(site=site, dispatched=True)
        .annotate(released=Exists(_releases_since_plan()))
        .order_by("-version")
        .first()
    )
    if plan is None or plan.released:  # type: ignore[attr-defined]  # the annotation
        return None
    return plan if plan.start_at <= now < plan.end_at else None


def plan_view(plan: Plan) -> dict[str, Any]:
    """A plan as the API shows it (the contract's fields, and a few more)."""
    return {
        "id": plan.code,
        "site_id": plan.site.code,
        "version": plan.version,
        "created_at": format_timestamp(plan.created_at),
        "reason": plan.reason,
        "status": plan.status,
        "slot_minutes": plan.slot_minutes,
        "currency": plan.currency,
        "slots": plan.slots,
        "cost": {
            "total": plan.cost_total,
            "baseline": plan.cost_baseline,
            "savings": round(plan.cost_baseline - plan.cost_total, 4),
        },
        "violations": plan.violations,
        "solve_ms": plan.solve_ms,
        "command_id": plan.command_id or None,
        "dispatched": plan.dispatched,
        "inputs_digest": plan.inputs_digest,
        "previous_forecast_error_kw": plan.previous_forecast_error_kw,
    }


def plan_actual(plan: Plan, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Per slot of `plan`: what it planned and what was measured (average battery power and
    grid import over the slot, SOC of its last reading; null for slots not measured yet)."""
    seconds = plan.slot_minutes * 60
    measured = {s.start: s for s in slot_stats(plan.site_id, plan.start_at, plan.end_at, seconds)}
    out = []
    for slot in plan.slots:
        row = measured.get(datetime.fromisoformat(slot["start"]))
        out.append(
            {
                "start": slot["start"],
                "end": slot["end"],
                "planned_soc_pct": slot["soc_pct"],
                "measured_soc_pct": _rounded(row.last("battery_soc_pct")) if row else None,
                "planned_battery_power_kw": slot["battery_power_kw"],
                "measured_battery_power_kw": _rounded(row.avg("battery_power_kw")) if row else None,
                "planned_grid_import_kw": slot["grid_import_kw"],
                "measured_grid_import_kw": _rounded(row.avg("grid_import_kw")) if row else None,
                "readings": row.count if row else 0,
            }
        )
    return out


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


# --- re-planning (model-predictive control) -----------------------------------------------------


def _releases_since_plan() -> QuerySet[PlanRelease]:
    """Releases of the outer plan's site made once it was stored (for `Exists`): ordered by
    version, as plans and releases are stored under the site's lock, not by clocks."""
    return PlanRelease.objects.filter(
        site=OuterRef("site_id"), plan_version__gte=OuterRef("version")
    )


def _controlling(plans: QuerySet[Plan]) -> QuerySet[Plan]:
    """The dispatched plans among `plans` that no release of their site came after. A site
    has one exactly when its newest dispatched plan is newer than its newest release: it is
    under the optimizer's control."""
    return plans.filter(dispatched=True).exclude(Exists(_releases_since_plan()))


def controlled_site_pks() -> list[int]:
    """Sites under the optimizer's control (one query): from the first plan an operator or
    the API dispatched, until a release (`release_site`), and again from the next dispatched
    plan."""
    return list(
        _controlling(Plan.objects.all()).order_by().values_list("site_id", flat=True).distinct()
    )


def is_controlled(site_pk: int) -> bool:
    return _controlling(Plan.objects.filter(site_id=site_pk)).exists()


def release_site(site: Site, *, by: str, now: datetime | None = None) -> PlanRelease:
    """Hand the site back to manual control: no automatic re-plan of any reason until a plan
    is dispatched again, and the gateway stops following the released schedule at once.
    NotControlled (404) when the site is not under the optimizer's control.

    What stops the gateway is an `apply_schedule` of one 0 kW slot to the released plan's end,
    from a slot before now (so a gateway whose clock is a little behind Enexa's still finds
    the slot covering its now). The gateway follows the last applied schedule and leases its
    current slot (amperio/dispatch/plan.py, leases.py): this schedule replaces the released
    one, and its slot's lease replaces the running slot's battery setpoints with 0 (idle, the
    units' default) as it is applied. A `set_battery_power` 0 would not do: the released
    schedule stays the last applied and takes over again when that setpoint's lease ends (and
    autonomy follows it while Enexa is unreachable). The slot lasts as long as the released
    schedule would have, so a late delivery still applies (not expired) while that schedule
    could still run; an operator's `set_battery_power` overrides it as it would any schedule
    slot, and after it the gateway has no schedule left."""
    now = now or timezone.now()
    with transaction.atomic():
        _lock(site)
        plan = (
            _controlling(Plan.objects.filter(site=site))
            .order_by("-version")
            .only("end_at", "slot_minutes")
            .first()
        )
        if plan is None:
            raise NotControlled(f"{site.code} is not under the optimizer's control.")
        newest = Plan.objects.filter(site=site).aggregate(v=Max("version"))["v"]
        code = f"release_{uuid.uuid4().hex[:20]}"
        end = max(plan.end_at, now + timedelta(minutes=plan.slot_minutes))
        start = now - timedelta(minutes=plan.slot_minutes)
        idle = {
            "slots": [
                {"start": format_timestamp(start), "end": format_timestamp(end), "power_kw": 0.0}
            ]
        }
        command_id = _issue_schedule(site, f"release {code}", code, idle, end, by, now)
        release = PlanRelease.objects.create(
            site=site,
            plan_version=newest,
            released_at=now,
            released_by=by[:150],
            command_id=command_id,
        )
        transaction.on_commit(lambda: plan_released.send(sender=PlanRelease, release=release))
    logger.info("%s released from the optimizer by %s (%s)", site.code, by, command_id)
    return release


def release_view(release: PlanRelease) -> dict[str, Any]:
    """A release as `DELETE .../plan` answers it (and `plan.released` sends it)."""
    return {
        "site_id": release.site.code,
        "released_at": format_timestamp(release.released_at),
        "released_by": release.released_by,
        "command_id": release.command_id,
    }


def request_replan(site: Site, reason: str) -> None:
    """Enqueue a re-plan of a controlled site once the current transaction commits (prices or
    configuration changed); nothing for a site the optimizer does not control."""
    from . import tasks  # tasks import these services: a module-level import would circle

    if is_controlled(site.pk):
        since = format_timestamp(timezone.now())
        tasks.replan_site.delay_on_commit(site.pk, reason, since)


def replan_site(
    site_pk: int, reason: str, since: str | None = None, *, now: datetime | None = None
) -> Plan | None:
    """Re-plan a controlled site, dispatched; nothing when it has a plan made at or after
    `since` (the task ran twice, or another trigger re-planned it meanwhile) or when it cannot
    be planned now (no prices, no battery: logged; the next trigger tries again)."""
    # The site, if it is under control: one read (checked again under its lock).
    controlling = _controlling(Plan.objects.filter(site=OuterRef("pk")))
    site = Site.objects.filter(Exists(controlling), pk=site_pk).first()
    if site is None:
        return None
    if since is not None:
        after = datetime.fromisoformat(since)
        if Plan.objects.filter(site=site, created_at__gte=after).exists():
            return None
    try:
        return create_plan(site, reason=reason, dispatch=True, now=now, require_control=True)
    except DomainError as exc:
        logger.warning("re-plan of %s (%s) not made: %s", site.code, reason, exc.detail)
        return None


def sites_due(*, now: datetime | None = None) -> list[int]:
    """Controlled sites whose newest plan is older than half the re-plan interval (so a plan
    just made by another trigger is not repeated)."""
    now = now or timezone.now()
    recent = now - timedelta(seconds=settings.ENEXA_OPTIMIZER_REPLAN_INTERVAL_S / 2)
    fresh = set(
        Plan.objects.filter(created_at__gte=recent).values_list("site_id", flat=True).distinct()
    )
    return [pk for pk in controlled_site_pks() if pk not in fresh]


def replan_fleet(reason: str = PlanReason.SCHEDULED, *, now: datetime | None = None) -> dict:
    """Re-plan every due site in this process (what the beat's fan-out does across workers);
    returns counts of plans made and sites skipped."""
    counts = {"planned": 0, "skipped": 0}
    for pk in sites_due(now=now):
        made = replan_site(pk, reason, now=now)
        counts["planned" if made else "skipped"] += 1
    return counts


def prune_plans(*, now: datetime | None = None) -> int:
    """Delete plans whose horizon ended more than ENEXA_OPTIMIZER_PLAN_RETENTION_DAYS ago,
    keeping each site's newest plan (what makes it controlled, and the version to follow).
    Re-planning every 15 minutes stores about a hundred plans a day per site. Returns how
    many went."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.ENEXA_OPTIMIZER_PLAN_RETENTION_DAYS)
    newest = Plan.objects.filter(site=OuterRef("site")).order_by("-version").values("pk")[:1]
    old = Plan.objects.filter(end_at__lt=cutoff).exclude(pk=Subquery(newest))
    deleted, _ = old.delete()
    return deleted


def planned_soc_at(plan: Plan, at: datetime) -> float | None:
    """The plan's SOC at `at`, linear within the slot (from the previous slot's end SOC, or
    the measured SOC the plan started from)."""
    before = plan.inputs.get("problem", {}).get("soc_pct")
    for slot in plan.slots:
        start, end = datetime.fromisoformat(slot["start"]), datetime.fromisoformat(slot["end"])
        if start <= at < end:
            share = (at - start) / (end - start)
            return before + (slot["soc_pct"] - before) * share if before is not None else None
        before = slot["soc_pct"]
    return None


def soc_drift(site: Site, *, now: datetime | None = None) -> float | None:
    """How far (percentage points) the newest reading's SOC lies from the plan in force at its
    time; None when there is no plan in force or no reading since the plan was made."""
    now = now or timezone.now()
    plan = plan_in_force(site, now=now)
    if plan is None:
        return None
    soc, at = measured_soc(site)
    if soc is None or at is None or at < plan.created_at:
        return None
    planned = planned_soc_at(plan, at)
    return abs(soc - planned) if planned is not None else None


def check_drift(*, now: datetime | None = None) -> list[str]:
    """Enqueue a `soc_drift` re-plan of each controlled site whose measured SOC lies more than
    ENEXA_OPTIMIZER_SOC_DRIFT_PCT from its plan; returns their codes."""
    from . import tasks  # tasks import these services: a module-level import would circle

    now = now or timezone.now()
    drifted = []
    for site in Site.objects.filter(pk__in=controlled_site_pks()):
        drift = soc_drift(site, now=now)
        if drift is not None and drift > settings.ENEXA_OPTIMIZER_SOC_DRIFT_PCT:
            logger.info("%s: SOC %.1f points off its plan; re-planning", site.code, drift)
            tasks.replan_site.apply_async(
                (site.pk, PlanReason.SOC_DRIFT, format_timestamp(now)),
                expires=settings.ENEXA_OPTIMIZER_DRIFT_CHECK_S,  # the next check asks again
            )
            drifted.append(site.code)
    return drifted


def replan_after_outage(site: Site, *, now: datetime | None = None) -> dict[str, Any] | None:
    """After an outage (seed recovery steps 2-3): a controlled site gets a new plan from its
    newest reading, dispatched, instead of its stale schedules (superseded, never re-sent).
    Returns what to record on the outage report, or None for a site the optimizer does not
    control (its undelivered schedules are redelivered as any command)."""
    if not is_controlled(site.pk):
        return None
    try:
        plan = create_plan(
            site, reason=PlanReason.RECONNECT, dispatch=True, now=now, require_control=True
        )
    except DomainError as exc:
        logger.warning("re-plan of %s after its outage not made: %s", site.code, exc.detail)
        return {"plan": None, "error": exc.detail}
    return {"plan": plan.code, "command_id": plan.command_id}

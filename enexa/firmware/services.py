"""Firmware services: the release a controller should run, its reports, and rollouts.

Rules: a release is offered when it is published, not yanked, for the controller's model, in
its channel (a "beta" controller also gets stable releases; the channel is the configuration
setting `firmware.channel`), and either targets no site or the controller's site. The newest
by semantic version wins, and never one older than what the controller runs (no silent
downgrade). An update counts as succeeded only when the controller reports status "ok" while
running the release's version, i.e. after its restart."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Subquery

from enexa.configs.services import current_settings
from enexa.core.errors import ConflictError, InvalidInput, NotFoundError
from enexa.registry.models import Controller, Site

from . import semver
from .choices import Channel, ReportStatus, RolloutState
from .models import FirmwareRelease, FirmwareReport


def channels_for(channel: str) -> list[str]:
    return [Channel.STABLE, Channel.BETA] if channel == Channel.BETA else [Channel.STABLE]


def controller_channels(controllers: list[Controller]) -> dict[int, str]:
    """Each controller's channel (the setting `firmware.channel`), by primary key."""
    return {
        pk: settings.get("firmware", {}).get("channel", Channel.STABLE)
        for pk, settings in current_settings(controllers).items()
    }


def newest(releases) -> FirmwareRelease | None:
    """The release with the highest semantic version (invalid versions never win)."""
    valid = [r for r in releases if semver.is_valid(r.version)]
    return max(valid, key=lambda r: r.parsed_version, default=None)


def published_releases(controller_models: Iterable[str]) -> list[FirmwareRelease]:
    """The releases of these models that may be offered (published, not yanked), with their
    target sites: two reads, whatever the number of controllers they are matched to."""
    releases = FirmwareRelease.objects.filter(
        controller_model__in=controller_models, published=True, yanked=False
    )
    return list(releases.prefetch_related("target_sites"))


def is_offered(
    release: FirmwareRelease, controller_model: str, channel: str, site_pk: int | None
) -> bool:
    """Whether a published, not yanked release is offered to a controller of this model,
    channel and site (site_pk None: only releases for every site)."""
    targets = {site.pk for site in release.target_sites.all()}
    return (
        release.controller_model == controller_model
        and release.channel in channels_for(channel)
        and (not targets or site_pk in targets)
    )


def latest_for_each(controllers: list[Controller]) -> dict[int, FirmwareRelease | None]:
    """`latest_for` of each controller, by primary key, in a fixed number of reads."""
    releases = published_releases({c.model for c in controllers})
    channels = controller_channels(controllers)
    latest = {}
    for controller in controllers:
        best = newest(
            r
            for r in releases
            if is_offered(r, controller.model, channels[controller.pk], controller.site_id)
        )
        running = semver.parse(controller.firmware_version)
        if best is not None and running is not None and best.parsed_version < running:
            best = None
        latest[controller.pk] = best
    return latest


def latest_for(controller: Controller) -> FirmwareRelease | None:
    """The newest release offered to `controller`, or None; never older than what it runs."""
    return latest_for_each([controller])[controller.pk]


def is_outdated(controller: Controller, latest: FirmwareRelease | None) -> bool:
    """Whether `latest` (the release offered to `controller`) is newer than what it runs, by
    semantic version: build metadata does not count; an unknown running version is outdated."""
    if latest is None:
        return False
    running = semver.parse(controller.firmware_version)
    return running is None or running < latest.parsed_version


def latest_for_model(controller_model: str, channel: str = Channel.STABLE):
    """The newest release of a model for every site (no controller to target)."""
    releases = published_releases([controller_model])
    return newest(r for r in releases if is_offered(r, controller_model, channel, None))


def create_release(*, data: dict, target_sites=(), by: str) -> FirmwareRelease:
    """Register a release (validated); a second one of the same model and version is 409."""
    release = FirmwareRelease(created_by=by, **data)
    _full_clean(release)
    try:
        with transaction.atomic():
            release.save()
            release.target_sites.set(target_sites)
    except IntegrityError as exc:
        raise ConflictError(
            f"{release.controller_model} {release.version} is already registered."
        ) from exc
    return release


def update_release(release: FirmwareRelease, *, data: dict, target_sites=None) -> FirmwareRelease:
    """Publish, yank, retarget or edit a release; its version and image stay what they were."""
    for name, value in data.items():
        setattr(release, name, value)
    _full_clean(release)
    with transaction.atomic():
        release.save()
        if target_sites is not None:
            release.target_sites.set(target_sites)
    return release


def _full_clean(release: FirmwareRelease) -> None:
    from django.core.exceptions import ValidationError

    try:
        release.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        raise InvalidInput("The release is invalid.", exc.message_dict) from exc


def find_release(version: str, controller_model: str | None = None) -> FirmwareRelease:
    releases = FirmwareRelease.objects.filter(version=version)
    if controller_model:
        releases = releases.filter(controller_model=controller_model)
    found = list(releases[:2])
    if not found:
        raise NotFoundError(f"No firmware release {version}.")
    if len(found) > 1:
        raise InvalidInput(
            f"Several controller models have a release {version}.",
            {"model": ["Name the controller model (?model=)."]},
        )
    return found[0]


def record_report(
    controller: Controller,
    *,
    current_version: str,
    status: str,
    error: str = "",
    target_version: str = "",
    message_id: str = "",
) -> tuple[FirmwareReport, bool]:
    """Store a controller's report and the version it runs. Returns (report, created); a
    replayed `message_id` returns the first report."""
    errors: dict[str, list[str]] = {}
    if not semver.is_valid(current_version):
        errors["current_version"] = ["Must be a semantic version (e.g. 2.0.5)."]
    if target_version and not semver.is_valid(target_version):
        errors["target_version"] = ["Must be a semantic version (e.g. 2.1.0)."]
    if status not in ReportStatus.values:
        errors["status"] = ["Must be one of: " + ", ".join(ReportStatus.values) + "."]
    if status == ReportStatus.FAILED and not error.strip():
        errors["error"] = ["Say why the update failed."]
    if errors:
        raise InvalidInput("The firmware report is invalid.", errors)
    if message_id:
        first = FirmwareReport.objects.filter(controller=controller, message_id=message_id).first()
        if first is not None:
            return first, False
    try:
        with transaction.atomic():
            report = FirmwareReport.objects.create(
                controller=controller,
                current_version=current_version,
                status=status,
                error=error,
                target_version=target_version,
                message_id=message_id,
            )
            if controller.firmware_version != current_version:
                Controller.objects.filter(pk=controller.pk).update(firmware_version=current_version)
                controller.firmware_version = current_version
    except IntegrityError:  # the same message_id raced in
        return FirmwareReport.objects.get(controller=controller, message_id=message_id), False
    return report, True


def update_succeeded(report: FirmwareReport, release: FirmwareRelease) -> bool:
    """The success rule: "ok" while running the release's version (a "done" before the
    restart, still on the old version, is not success)."""
    running = semver.parse(report.current_version)
    return report.status == ReportStatus.OK and running == release.parsed_version


def _rollout_state(
    controller: Controller, last: FirmwareReport | None, release: FirmwareRelease
) -> str:
    running = semver.parse(controller.firmware_version)
    if last is not None and update_succeeded(last, release):
        return RolloutState.SUCCEEDED
    if running is not None and running > release.parsed_version:
        return RolloutState.AHEAD
    if last is not None and semver.parse(last.target_version) == release.parsed_version:
        if last.status == ReportStatus.FAILED:
            return RolloutState.FAILED
        if last.status in (ReportStatus.DOWNLOADING, ReportStatus.INSTALLING):
            return RolloutState.IN_PROGRESS
    return RolloutState.PENDING


def rollout_controllers(release: FirmwareRelease, target_sites: list[Site]) -> list[Controller]:
    """The controllers a release is meant for: its model, at its `target_sites` (none: every
    site), and its channel per controller."""
    of_model = Controller.objects.filter(model=release.controller_model).select_related("site")
    if target_sites:
        of_model = of_model.filter(site__in=target_sites)
    controllers = list(of_model)
    if release.channel == Channel.STABLE:
        return controllers
    channels = controller_channels(controllers)
    return [c for c in controllers if channels[c.pk] == Channel.BETA]


def last_reports(controllers: list[Controller]) -> dict[int, FirmwareReport]:
    """Each controller's newest report (Meta.ordering), by primary key, in one read; a
    controller that never reported is left out."""
    newest_report = FirmwareReport.objects.filter(controller=OuterRef("controller"))
    return {
        report.controller_id: report
        for report in FirmwareReport.objects.filter(
            controller__in=controllers, pk=Subquery(newest_report.values("pk")[:1])
        )
    }


def rollout_status(release: FirmwareRelease) -> dict:
    """How a release is going: counts per state and one line per controller."""
    target_sites = list(release.target_sites.all())
    controllers = rollout_controllers(release, target_sites)
    reports = last_reports(controllers)
    rows = []
    counts = {state: 0 for state in RolloutState.values}
    for controller in controllers:
        last = reports.get(controller.pk)
        state = _rollout_state(controller, last, release)
        counts[state] += 1
        rows.append(
            {
                "id": controller.code,
                "site_id": controller.site.code,
                "current_version": controller.firmware_version or None,
                "state": state,
                "last_status": last.status if last else None,
                "last_reported_at": last.reported_at if last else None,
                "error": last.error if last and last.status == ReportStatus.FAILED else "",
            }
        )
    return {
        "version": release.version,
        "controller_model": release.controller_model,
        "channel": release.channel,
        "published": release.published,
        "yanked": release.yanked,
        "target_sites": sorted(site.code for site in target_sites),
        "counts": counts,
        "controllers": rows,
    }


def outdated_controllers(site_pks: set[int] | None = None) -> list[dict]:
    """Controllers for which a newer release is offered than the one they run."""
    visible = Controller.objects.select_related("site").order_by("code")
    if site_pks is not None:
        visible = visible.filter(site_id__in=site_pks)
    controllers = list(visible)
    latest_releases = latest_for_each(controllers)
    out = []
    for controller in controllers:
        latest = latest_releases[controller.pk]
        if latest is not None and is_outdated(controller, latest):
            out.append(
                {
                    "id": controller.code,
                    "site_id": controller.site.code,
                    "model": controller.model,
                    "current_version": controller.firmware_version or None,
                    "latest_version": latest.version,
                }
            )
    return out

"""The dashboard's pages and their live fragments: thin views over enexa.dashboard.services,
with the API's site rules (enexa.core.visibility: another site is 404, viewers only read)."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseNotModified,
    JsonResponse,
    QueryDict,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import get_template
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect, trigger_client_event

from enexa.api.errors import PROBLEM_CONTENT_TYPE, problem_body
from enexa.api.etags import etag, none_match
from enexa.api.throttling import check_and_add, key_prefix, parse_rate
from enexa.core.errors import DomainError
from enexa.core.network import client_ip
from enexa.core.principals import principal_label
from enexa.core.visibility import may_operate, visible_sites
from enexa.optimizer.services import plan_in_force
from enexa.registry.models import Site
from enexa.telemetry import queries
from enexa.telemetry.choices import Resolution

from . import services
from .choices import CHART_RANGES, ChartRange
from .filters import FleetFilterForm
from .forms import DispatchForm
from .templatetags import dashboard as dashboard_tags

logger = logging.getLogger(__name__)

# How often the live parts ask for fresh fragments (seconds); readings come every few seconds.
POLL_S = 5
# The CSV export's resolution per chart range (raw readings for an hour).
EXPORT_RESOLUTION = {
    ChartRange.HOUR: Resolution.RAW,
    ChartRange.DAY: Resolution.MINUTE,
    ChartRange.WEEK: Resolution.QUARTER,
}


def dashboard_login_required(view):
    """login_required, except that an htmx poll of an expired session sends the whole page to
    the login (instead of the login form swapped into a table)."""
    guarded = login_required(view)

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if request.htmx and not request.user.is_authenticated:
            return HttpResponseClientRedirect(f"{reverse(settings.LOGIN_URL)}?next={request.path}")
        return guarded(request, *args, **kwargs)

    return wrapper


def wants_fragment(request: HttpRequest) -> bool:
    """An htmx request that swaps a part of the page (not one restoring a whole page from
    history, as after the back button)."""
    htmx = getattr(request, "htmx", None)  # absent when a middleware before it refused
    return bool(htmx) and not htmx.history_restore_request


def _site_or_404(request: HttpRequest, site_id: str) -> Site:
    return get_object_or_404(visible_sites(request.user), code=site_id)


def _chart_range(value: str | None) -> ChartRange | None:
    return ChartRange(value) if value in ChartRange.values else None


# --- login ----------------------------------------------------------------------------------------


class LoginView(auth_views.LoginView):
    """Django's login, counted against the API's `login` rate limit per client address (the
    same counter as `POST /v1/auth/token`), so the form is no way around it."""

    template_name = "dashboard/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        rate = settings.ENEXA_RATE_LIMITS.get("login")
        if rate:
            limit, window_s = parse_rate(rate)
            key = f"{key_prefix()}:login:ip:{client_ip(request)}"
            allowed, remaining_s = check_and_add(key, 1, limit, window_s)
            if not allowed:
                logger.info("dashboard login rate limit reached by %s", client_ip(request))
                # Unbound: a bound form would check the password while refusing to.
                form = self.get_form_class()(
                    request, initial={"username": request.POST.get("username", "")}
                )
                refused = "Too many attempts; try again in a minute."
                response = self.render_to_response(
                    self.get_context_data(form=form, refused=refused)
                )
                response.status_code = 429
                response["Retry-After"] = str(max(1, int(remaining_s)))
                return response
        return super().post(request, *args, **kwargs)


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "dashboard/password_change.html"
    success_url = reverse_lazy("dashboard:password_change_done")


class PasswordChangeDoneView(auth_views.PasswordChangeDoneView):
    template_name = "dashboard/password_change_done.html"


# --- the fleet ------------------------------------------------------------------------------------


FLEET_TABLE = "dashboard/_fleet_table.html"
# What a fleet row holds that the table does not show (the "since" column is digested as shown).
NOT_SHOWN = ("since_at", "last_seen_at", "reading_at")


@functools.cache
def _fleet_markup_version() -> str:
    """Changes with the table's markup (its template and tags), so that after a deployment an
    unchanged fleet is not answered 304 to a browser holding the old markup."""
    source = get_template(FLEET_TABLE).template.source.encode()  # type: ignore[attr-defined]
    tags = Path(dashboard_tags.__file__).read_bytes()
    return hashlib.sha256(source + tags).hexdigest()[:12]


def fleet_digest(rows: list[services.FleetRow], *, query: str, now: datetime) -> str:
    """The table's ETag value: a digest of what it shows (each row's values, its "since" as
    shown, the filter and the markup), not of when it was asked, so an unchanged fleet
    matches."""
    shown = [
        {
            **{k: v for k, v in asdict(row).items() if k not in NOT_SHOWN},
            "since": row.since_at
            and (f"{row.since_at:%Y-%m-%d %H:%M}", dashboard_tags.ago(row.since_at, now)),
        }
        for row in rows
    ]
    body = json.dumps([_fleet_markup_version(), query, POLL_S, shown], default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


@require_GET
@dashboard_login_required
@vary_on_headers("HX-Request")  # the fragment and the page share the URL, not a cache entry
def fleet(request: HttpRequest) -> HttpResponse:
    """`/app/`: every visible site; an htmx request (the poll, the filter) gets the table, with
    its ETag; the poll sends it back (If-None-Match), and an unchanged table is a 304."""
    form = FleetFilterForm(request.GET)
    rows = form.filtered(services.fleet_rows(request.user))
    now = timezone.now()
    query = request.GET.urlencode()
    digest = fleet_digest(rows, query=query, now=now)
    tag = etag(digest)
    fragment = wants_fragment(request)
    if fragment and none_match(request, digest):
        response: HttpResponse = HttpResponseNotModified()
    else:
        context = {
            "form": form,
            "rows": rows,
            "query": query,
            "poll_s": POLL_S,
            # The table's own copy of its ETag, sent back with its poll (htmx sends none itself).
            "poll_headers": json.dumps({"If-None-Match": tag}),
            "now": now,
            # `/app/sites/{site_id}/` (fixed in the contract): one reverse, not one per row.
            "sites_url": reverse("dashboard:fleet") + "sites/",
        }
        response = render(request, FLEET_TABLE if fragment else "dashboard/fleet.html", context)
    if fragment:
        response["ETag"] = tag
    patch_cache_control(response, private=True, no_cache=True)
    return response


# --- one site -------------------------------------------------------------------------------------


@require_GET
@dashboard_login_required
def site_page(request: HttpRequest, site_id: str) -> HttpResponse:
    """`/app/sites/{site_id}/`: live power flow, charts, commands, events, outages, versions."""
    site = _site_or_404(request, site_id)
    return _render_site(request, site)


def _dispatch_form(
    site: Site, data: QueryDict | None = None, chargers: dict[str, float | None] | None = None
) -> DispatchForm:
    """The dispatch form offering the site's chargers (read unless given)."""
    return DispatchForm(
        data, chargers=services.site_chargers(site) if chargers is None else chargers
    )


def _render_site(
    request: HttpRequest, site: Site, form: DispatchForm | None = None, status: int = 200
) -> HttpResponse:
    may_act = may_operate(request.user, site.pk)
    if may_act and form is None:
        form = _dispatch_form(site)
    context = {
        "site": site,
        "live": services.live_state(site),
        "controllers": services.site_controllers(site),
        "alerts": services.site_alerts(site),
        "timeline": services.site_timeline(site),
        "outages": services.site_outages(site),
        "may_act": may_act,
        "form": form if may_act else None,
        "ranges": ChartRange.choices,
        "plan": plan_in_force(site),
        "poll_s": POLL_S,
    }
    return render(request, "dashboard/site.html", context, status=status)


@require_GET
@dashboard_login_required
def site_live(request: HttpRequest, site_id: str) -> HttpResponse:
    """The site page's live panel (power flow, alarms, commands), polled by htmx."""
    site = _site_or_404(request, site_id)
    return render(
        request,
        "dashboard/_site_live.html",
        {"site": site, "live": services.live_state(site), "poll_s": POLL_S},
    )


@require_GET
@dashboard_login_required
def chart_data(request: HttpRequest, site_id: str) -> JsonResponse:
    """`?range=hour|day|week`: the charts' series, bucketed in the database."""
    site = _site_or_404(request, site_id)
    chart_range = _chart_range(request.GET.get("range", ChartRange.HOUR))
    if chart_range is None:
        return _invalid("range", "Must be one of: " + ", ".join(ChartRange.values) + ".")
    return JsonResponse(services.chart_data(site, chart_range))


@require_GET
@dashboard_login_required
def export_csv(request: HttpRequest, site_id: str) -> HttpResponse:
    """The range as CSV, the same lines as `GET /v1/sites/{site_id}/telemetry?format=csv`
    (raw readings for an hour, 1-minute buckets for a day, 15-minute ones for a week)."""
    site = _site_or_404(request, site_id)
    chart_range = _chart_range(request.GET.get("range", ChartRange.DAY))
    if chart_range is None:
        return _invalid("range", "Must be one of: " + ", ".join(ChartRange.values) + ".")
    end = timezone.now()
    start = end - timedelta(seconds=CHART_RANGES[chart_range][0])
    rng = queries.Range(start, end, EXPORT_RESOLUTION[chart_range])
    response = StreamingHttpResponse(queries.csv_lines(site, rng), content_type="text/csv")
    name = f"{site.code}-{start:%Y%m%dT%H%M%S}-{rng.resolution}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _invalid(field: str, reason: str) -> JsonResponse:
    body = problem_body(400, "Invalid input", f"{field}: {reason}", "invalid", {field: [reason]})
    return JsonResponse(body, status=400, content_type=PROBLEM_CONTENT_TYPE)


@require_POST
@dashboard_login_required
def dispatch(request: HttpRequest, site_id: str) -> HttpResponse:
    """The dispatch form: the command goes through the API's own service; its errors (limits
    included) come back on the form's fields. Viewers may not (403)."""
    site = _site_or_404(request, site_id)
    if not may_operate(request.user, site.pk):
        return error_response(request, 403, DISPATCH_REFUSED)
    form = _dispatch_form(site, request.POST)
    command = None
    if form.is_valid():
        try:
            command, _ = services.dispatch_from_form(
                site,
                command=form.cleaned_data["command"],
                params=form.params(),
                created_by=principal_label(request.user),
            )
        except DomainError as exc:
            form.add_service_errors(exc.errors, exc.detail)
    if command is None and not request.htmx:
        return _render_site(request, site, form, status=422)
    if command is None:
        context = {"site": site, "form": form}
        return render(request, "dashboard/_dispatch_form.html", context, status=422)
    if not request.htmx:
        messages.success(request, f"Command {command.command_id} sent ({command.status}).")
        return redirect("dashboard:site", site_id=site.code)
    # Sent: a fresh form, the command named above it (its status follows in the live panel).
    fresh = _dispatch_form(site, chargers=form.chargers)
    context = {"site": site, "form": fresh, "sent": command}
    response = render(request, "dashboard/_dispatch_form.html", context)
    return trigger_client_event(response, "commandSent")  # the live panel reloads at once


# --- errors (enexa.urls and enexa.dashboard.middleware send /app/'s here) -------------------------

# The status word and what it means to an operator; never the request's details.
ERRORS = {
    403: ("Forbidden", "You may not do this here."),
    404: ("Not found", "There is no such page, or it is not one of your sites."),
    405: ("Method not allowed", "This page does not take this kind of request."),
}
DISPATCH_REFUSED = "Only staff and the site's operators may send commands to this site."
CSRF_REFUSED = "The form had expired. Reload the page and try again."


def in_dashboard(request: HttpRequest) -> bool:
    """The request is for the dashboard (mounted at /app/ by enexa.urls, fixed in the contract)."""
    return request.path_info.startswith("/app/")


def error_response(request: HttpRequest, status: int, reason: str = "") -> HttpResponse:
    """A 403, 404 or 405 in the dashboard's layout, or for an htmx request the small fragment
    the page shows in its notice area (base.html's htmx config), with its status code."""
    title, meaning = ERRORS[status]
    context = {"status": status, "title": title, "reason": reason or meaning}
    template = "dashboard/_error.html" if wants_fragment(request) else "dashboard/error.html"
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ("HX-Request",))  # the fragment and the page share the URL
    return response


def method_not_allowed(request: HttpRequest, refused: HttpResponseNotAllowed) -> HttpResponse:
    """Django's empty 405 (require_GET, require_POST, a class-based view's
    http_method_not_allowed) as the dashboard's page or fragment, naming the methods of its
    `Allow` header, which it keeps as the view set it (never the refused method itself)."""
    allowed = [method.strip() for method in refused["Allow"].split(",") if method.strip()]
    reason = f"This page accepts only {' or '.join(allowed)}." if allowed else ""
    response = error_response(request, 405, reason)
    response["Allow"] = refused["Allow"]
    return response

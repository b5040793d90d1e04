"""Telemetry endpoints: ingest of readings, status and events; reading back; outage reports.

Ingest views are thin and skip DRF serializers on purpose: the shared schema validates each
item and the service writes a batch with one statement (see services.py)."""

import functools

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from enexa.api.errors import PROBLEM_CONTENT_TYPE, problem_body
from enexa.api.schema import json_body, problems
from enexa.api.scoping import SiteView
from enexa.core import metrics
from enexa.core.principals import is_controller
from enexa.core.visibility import may_operate
from shared import openapi as wire
from shared.fields import format_timestamp

from . import availability, energy, periods, queries, schema, services
from .choices import Resolution
from .models import OutageReport


def poster_for(user) -> services.Poster:
    """Who may post for which site: staff and a site's operators, and a controller key for its
    own site (a gateway posts its site's telemetry)."""
    return services.Poster(
        may_post_for=functools.partial(may_operate, user, controller_own_site=True),
        controller_pk=user.controller_pk if is_controller(user) else None,
    )


def count_items(kind: str, result: services.IngestResult) -> None:
    """The items' outcomes into the ingest counters of /metrics."""
    for outcome in ("accepted", "duplicate", "rejected"):
        if n := getattr(result, outcome):
            metrics.INGESTED_ITEMS.labels(kind=kind, outcome=outcome).inc(n)


def counts_response(result: services.IngestResult) -> Response:
    """201 when something new was stored, 200 when nothing new was (duplicates, perhaps some
    rejected), 400 when every item was rejected: the body then carries the counts and the
    problem-details fields (`type`, `title`, `status`, `detail`) side by side."""
    body = result.as_dict()
    if result.all_rejected:
        body.update(
            problem_body(
                400,
                "Invalid input",
                f"All {result.rejected} item(s) were rejected; see errors.",
                "invalid",
            )
        )
        response = Response(body, status=status.HTTP_400_BAD_REQUEST)
        response.content_type = PROBLEM_CONTENT_TYPE
        return response
    return Response(body, status=status.HTTP_201_CREATED if result.accepted else status.HTTP_200_OK)


class TelemetryIngestView(APIView):
    """`POST /v1/telemetry`: one reading or `{"items": [...]}`."""

    # The shared schema refuses unstorable text (NUL, lone surrogates) per item, so one bad
    # item costs only itself (enexa.api.middleware leaves the body to it).
    checks_text_per_item = True

    @extend_schema(
        request=json_body(wire.one_or_batch("TelemetryReading")),
        responses=schema.INGEST_RESPONSES,
    )
    def post(self, request):
        with metrics.INGEST_SECONDS.labels(kind="telemetry").time():
            result = services.ingest_readings(poster_for(request.user), request.data)
        count_items("telemetry", result)
        return counts_response(result)


class EventIngestView(APIView):
    """`POST /v1/events`: one event or `{"items": [...]}`; `message_id` in errors is the
    item's `event_id`."""

    checks_text_per_item = True  # as for telemetry

    @extend_schema(request=json_body(wire.one_or_batch("Event")), responses=schema.INGEST_RESPONSES)
    def post(self, request):
        with metrics.INGEST_SECONDS.labels(kind="events").time():
            result = services.ingest_events(poster_for(request.user), request.data)
        count_items("events", result)
        return counts_response(result)


class StatusView(APIView):
    """`POST /v1/status`: the gateway's status report; answers the site's status."""

    @extend_schema(
        request=json_body(wire.ref("StatusReport")),
        responses={200: schema.SITE_STATUS, **problems(404)},  # 404: an unknown site
    )
    def post(self, request):
        return Response(services.record_status(poster_for(request.user), request.data))


class CSVRenderer(BaseRenderer):
    """Lets `?format=csv` through content negotiation; the view streams the body itself."""

    media_type = "text/csv"
    format = "csv"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


def csv_download(lines, name: str) -> StreamingHttpResponse:
    """The CSV lines streamed as an attachment called `name`."""
    response = StreamingHttpResponse(lines, content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def json_or_csv(json_schema, csv_schema) -> dict:
    """`extend_schema` responses of a view answering JSON, or CSV when asked."""
    return {(200, "application/json"): json_schema, (200, "text/csv"): csv_schema}


RANGE_PARAMETERS = [
    OpenApiParameter("from", OpenApiTypes.DATETIME, description="Start (default: to - 1 h)."),
    OpenApiParameter("to", OpenApiTypes.DATETIME, description="End, exclusive (default: now)."),
    OpenApiParameter("resolution", OpenApiTypes.STR, enum=Resolution.values),
    OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"]),
]


class SiteTelemetryView(SiteView):
    """`GET /v1/sites/{site_id}/telemetry?from=&to=&resolution=raw|1m|15m|1h[&format=csv]`."""

    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        parameters=RANGE_PARAMETERS,
        responses=json_or_csv(schema.TELEMETRY_RANGE, schema.TELEMETRY_CSV),
    )
    def get(self, request, site_id: str):
        site = self.site
        rng = queries.parse_range(request.query_params)
        if request.query_params.get("format") == "csv":
            name = f"{site.code}-{rng.start:%Y%m%dT%H%M%S}-{rng.resolution}.csv"
            return csv_download(queries.csv_lines(site, rng), name)
        body = {
            "site_id": site.code,
            "from": format_timestamp(rng.start),
            "to": format_timestamp(rng.end),
            "resolution": rng.resolution,
        }
        if rng.resolution == Resolution.RAW:
            points, next_from = queries.raw_readings(site, rng, settings.ENEXA_TELEMETRY_MAX_POINTS)
            body["points"] = points
            body["next_from"] = format_timestamp(next_from) if next_from else None
        else:
            body["points"] = queries.aggregated_points(site, rng)
        return Response(body)


class SiteTelemetryLatestView(SiteView):
    """`GET /v1/sites/{site_id}/telemetry/latest`: the newest reading and whether the site is
    online."""

    @extend_schema(responses={200: schema.LATEST})
    def get(self, request, site_id: str):
        site = self.site
        state = services.site_status(site)
        return Response(
            {
                "site_id": site.code,
                "online": services.is_online(state),
                "last_seen_at": format_timestamp(state.last_seen_at)
                if state and state.last_seen_at
                else None,
                "reading": queries.latest_reading(site),
            }
        )


class SiteStatusView(SiteView):
    """`GET /v1/sites/{site_id}/status`: online (as of now), last seen, mode, versions."""

    @extend_schema(responses={200: schema.SITE_STATUS})
    def get(self, request, site_id: str):
        site = self.site
        return Response(services.status_view(site, services.site_status(site)))


class SiteEventsView(SiteView):
    """`GET /v1/sites/{site_id}/events?from=&to=&kind=&severity=`: the site's events in the
    range (default the last hour), newest first, at most ENEXA_TELEMETRY_MAX_POINTS."""

    @extend_schema(
        parameters=RANGE_PARAMETERS[:2]
        + [
            OpenApiParameter("kind", OpenApiTypes.STR),
            OpenApiParameter("severity", OpenApiTypes.STR),
        ],
        responses={200: schema.EVENTS},
    )
    def get(self, request, site_id: str):
        site = self.site
        rng = queries.parse_range(request.query_params)
        return Response(
            {
                "site_id": site.code,
                "events": queries.site_events(
                    site,
                    rng,
                    kind=request.query_params.get("kind"),
                    severity=request.query_params.get("severity"),
                    limit=settings.ENEXA_TELEMETRY_MAX_POINTS,
                ),
            }
        )


class SiteOutagesView(SiteView):
    """`GET /v1/sites/{site_id}/outages`: the reconciliation report of each outage, newest
    first."""

    @extend_schema(responses={200: schema.OUTAGES})
    def get(self, request, site_id: str):
        site = self.site
        reports = OutageReport.objects.filter(site=site).order_by("-offline_at")[:100]
        return Response(
            {"site_id": site.code, "outages": [services.outage_view(r) for r in reports]}
        )


PERIOD_PARAMETERS = [
    OpenApiParameter(
        "from",
        OpenApiTypes.DATETIME,
        description="Start (default: a day of hours, a month of days or a year of months "
        "before `to`).",
    ),
    OpenApiParameter("to", OpenApiTypes.DATETIME, description="End, exclusive (default: now)."),
    OpenApiParameter(
        "tz",
        OpenApiTypes.STR,
        description="IANA time zone whose midnights cut days and months (default: the "
        "site's; `UTC` for UTC days). Hours are UTC hours in every zone.",
    ),
]


def per_period(site, rng: periods.PeriodRange) -> dict:
    """The envelope of figures per period: the site, the range, the period and its zone."""
    return {
        "site_id": site.code,
        "from": format_timestamp(rng.start),
        "to": format_timestamp(rng.end),
        "period": rng.period,
        "timezone": rng.tz,
    }


def wants_csv(request) -> bool:
    """`?format=csv` or `Accept: text/csv` (DRF's negotiation picked the CSV renderer)."""
    renderer = getattr(request, "accepted_renderer", None)
    return renderer is not None and renderer.format == "csv"


class SiteEnergyView(SiteView):
    """`GET /v1/sites/{site_id}/energy?from=&to=&period=hour|day|month&tz=[&format=csv]`:
    energy per UTC hour, or per day or month of the site's time zone (or `tz`'s) (default day;
    without `from` the last day, month or year of periods): grid import and export and the
    chargers' from their counters (a drop counts as a reset), the battery's by integrating its
    power. Only periods with readings are listed; a figure is null when the period has nothing
    to compute it from. CSV with `?format=csv` or `Accept: text/csv`."""

    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        parameters=[
            *PERIOD_PARAMETERS,
            OpenApiParameter("period", OpenApiTypes.STR, enum=list(periods.PERIODS)),
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"]),
        ],
        responses=json_or_csv(schema.ENERGY, schema.ENERGY_CSV),
    )
    def get(self, request, site_id: str):
        site = self.site
        rng = periods.parse_period_range(request.query_params, default_tz=site.timezone)
        figures = energy.site_energy(site.pk, rng)
        if wants_csv(request):
            name = f"{site.code}-energy-{rng.start:%Y%m%dT%H%M%S}-{rng.period}.csv"
            return csv_download(energy.energy_csv(figures, rng.tz), name)
        return Response({**per_period(site, rng), "methods": energy.METHODS, "periods": figures})


class SiteAvailabilityView(SiteView):
    """`GET /v1/sites/{site_id}/availability?from=&to=&period=day|month&tz=`: per day or
    month of the site's time zone (or `tz`'s), the share of the observed time the site was
    online (from its online/offline transitions) and the share of its chargers' reports that
    found them in service (not `faulted` or `unavailable`). Without `from`: the last month of
    days, or the last year of months."""

    @extend_schema(
        parameters=[
            *PERIOD_PARAMETERS,
            OpenApiParameter(
                "period", OpenApiTypes.STR, enum=list(availability.AVAILABILITY_PERIODS)
            ),
        ],
        responses={200: schema.AVAILABILITY},
    )
    def get(self, request, site_id: str):
        site = self.site
        rng = periods.parse_period_range(
            request.query_params,
            periods=availability.AVAILABILITY_PERIODS,
            default_tz=site.timezone,
        )
        return Response(
            {**per_period(site, rng), "periods": availability.site_availability(site.pk, rng)}
        )

"""Firmware endpoints: the latest release for a controller, the catalogue (staff), rollouts,
outdated controllers, and controllers' reports."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from enexa.api.errors import PROBLEM_CONTENT_TYPE
from enexa.api.pagination import envelope
from enexa.api.permissions import IsStaff
from enexa.api.schema import ProblemSerializer
from enexa.api.scoping import ControllerLookupMixin, controller_or_404
from enexa.core.errors import InvalidInput, NotFoundError
from enexa.core.principals import is_controller, is_staff_user, principal_label
from enexa.core.visibility import visible_site_pks

from . import services
from .choices import Channel
from .models import FirmwareRelease, FirmwareReport
from .serializers import (
    FirmwareReleaseSerializer,
    FirmwareReleaseUpdateSerializer,
    FirmwareReportSerializer,
    LatestFirmwareSerializer,
    OutdatedControllerSerializer,
    RolloutSerializer,
)

MODEL_PARAM = OpenApiParameter(
    "model",
    str,
    description="The controller model, when several models have a release of this version.",
)


class LatestFirmwareView(APIView):
    """`GET /v1/firmware/latest?controller=CTRL001` (or `?model=`, `&channel=`): the release to
    run; 404 when nothing newer than or equal to what the controller runs is offered."""

    @extend_schema(
        parameters=[
            OpenApiParameter("controller", str),
            OpenApiParameter("model", str, description="Releases for every site of this model."),
            OpenApiParameter("channel", str, enum=Channel.values),
        ],
        responses={200: LatestFirmwareSerializer, (404, PROBLEM_CONTENT_TYPE): ProblemSerializer},
    )
    def get(self, request):
        params, user = request.query_params, request.user
        code = params.get("controller") or (user.controller_code if is_controller(user) else "")
        if code:
            release = services.latest_for(controller_or_404(user, code))
        elif params.get("model"):
            channel = params.get("channel", Channel.STABLE)
            if channel not in Channel.values:
                raise InvalidInput("Unknown channel.", {"channel": ["Must be stable or beta."]})
            release = services.latest_for_model(params["model"], channel)
        else:
            raise InvalidInput(
                "Name the controller or the model.",
                {"controller": ["Give ?controller=<id> or ?model=<controller model>."]},
            )
        if release is None:
            raise NotFoundError("No firmware release is offered for this controller or model.")
        return Response(LatestFirmwareSerializer(release).data)


class FirmwareReleasesView(generics.ListCreateAPIView):
    """`GET`/`POST /v1/firmware`: the catalogue (staff); filter with `?model=`, `?channel=`."""

    permission_classes = [IsStaff]
    serializer_class = FirmwareReleaseSerializer
    pagination_class = envelope("releases")

    def get_queryset(self):
        releases = FirmwareRelease.objects.prefetch_related("target_sites")
        if model := self.request.query_params.get("model"):
            releases = releases.filter(controller_model=model)
        if channel := self.request.query_params.get("channel"):
            releases = releases.filter(channel=channel)
        return releases

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        sites = data.pop("target_sites", [])
        serializer.instance = services.create_release(
            data=data, target_sites=sites, by=principal_label(self.request.user)
        )


class FirmwareReleaseView(APIView):
    """`GET`/`PATCH /v1/firmware/{version}`: one release; publish, yank or retarget it."""

    permission_classes = [IsStaff]

    @extend_schema(parameters=[MODEL_PARAM], responses={200: FirmwareReleaseSerializer})
    def get(self, request, version: str):
        release = services.find_release(version, request.query_params.get("model"))
        return Response(FirmwareReleaseSerializer(release).data)

    @extend_schema(
        parameters=[MODEL_PARAM],
        request=FirmwareReleaseUpdateSerializer,
        responses={200: FirmwareReleaseSerializer},
    )
    def patch(self, request, version: str):
        release = services.find_release(version, request.query_params.get("model"))
        body = FirmwareReleaseUpdateSerializer(release, data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        sites = data.pop("target_sites", None)
        release = services.update_release(release, data=data, target_sites=sites)
        return Response(FirmwareReleaseSerializer(release).data)


class FirmwareRolloutView(APIView):
    """`GET /v1/firmware/{version}/rollout`: how far a release has got, per controller."""

    permission_classes = [IsStaff]

    @extend_schema(parameters=[MODEL_PARAM], responses={200: RolloutSerializer})
    def get(self, request, version: str):
        release = services.find_release(version, request.query_params.get("model"))
        return Response(RolloutSerializer(services.rollout_status(release)).data)


class OutdatedControllersView(APIView):
    """`GET /v1/firmware/outdated`: controllers (of the caller's sites) offered a newer release."""

    @extend_schema(
        responses={
            200: inline_serializer(
                "OutdatedControllers",
                {"controllers": OutdatedControllerSerializer(many=True)},
            )
        }
    )
    def get(self, request):
        if is_controller(request.user):
            raise PermissionDenied("Not for controller keys.")
        rows = services.outdated_controllers(visible_site_pks(request.user))
        return Response({"controllers": OutdatedControllerSerializer(rows, many=True).data})


class ControllerFirmwareView(ControllerLookupMixin, generics.ListCreateAPIView):
    """`POST /v1/controllers/{controller_id}/firmware`: a report (the controller itself, or
    staff); `GET`: its report history, newest first."""

    write_denied = "Only the controller itself (or staff) reports its firmware."

    def may_write(self, user, site_pk: int) -> bool:
        return is_controller(user) or is_staff_user(user)  # a key sees only its own controller

    serializer_class = FirmwareReportSerializer
    pagination_class = envelope("reports")
    queryset = FirmwareReport.objects.none()

    def get_queryset(self):
        return FirmwareReport.objects.filter(controller=self.controller).select_related(
            "controller"
        )

    @extend_schema(
        request=FirmwareReportSerializer,
        responses={201: FirmwareReportSerializer, 200: FirmwareReportSerializer},
    )
    def post(self, request, controller_id: str):
        body = FirmwareReportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        report, created = services.record_report(
            self.controller,
            current_version=data["current_version"],
            status=data["status"],
            error=data.get("error", ""),
            target_version=data.get("target_version", ""),
            message_id=data.get("message_id") or request.headers.get("Idempotency-Key", ""),
        )
        return Response(
            FirmwareReportSerializer(report).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

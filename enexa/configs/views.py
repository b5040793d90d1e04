"""Configuration endpoints: a controller's config (ETag, cheap version poll), the site's
config, writes with If-Match, history, diff and rollback."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from enexa.api.etags import etag, none_match, required_if_match
from enexa.api.pagination import envelope
from enexa.api.principals import is_controller, principal_label, visible_site_pks
from enexa.api.schema import json_body
from enexa.api.scoping import caller_controller, caller_site, may_operate
from enexa.registry.models import Site

from . import services
from .models import ConfigState, ConfigVersion
from .schema import settings_document
from .serializers import (
    ConfigSerializer,
    ConfigStateSerializer,
    ConfigVersionDetailSerializer,
    ConfigVersionSerializer,
    SiteConfigDocumentSerializer,
    VersionPollSerializer,
)

IF_MATCH = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description='The current version as its ETag, e.g. "5"; 412 when stale, 428 when missing.',
)
IF_MATCH_OPTIONAL = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description='Optional: the current version as its ETag, e.g. "5"; 412 when stale.',
)
IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="The ETag the caller holds; 304 when it is still current.",
)
SETTINGS_BODY = json_body(settings_document())
DIFF = inline_serializer(
    "ConfigDiff",
    {
        "from": serializers.IntegerField(),
        "to": serializers.IntegerField(),
        "changes": serializers.ListField(child=serializers.DictField()),
    },
)


def check_may_configure(user, site: Site) -> None:
    """Staff and the site's operators write configuration; controllers and viewers read it."""
    if not may_operate(user, site.pk):
        raise PermissionDenied("Only staff and the site's operators may change configuration.")


def config_response(config: dict) -> Response:
    return Response(config, headers={"ETag": etag(config["version"])})


def site_response(document: dict) -> Response:
    return Response(document, headers={"ETag": etag(document["revision"])})


class ControllerConfigView(APIView):
    """`GET`/`PUT`/`PATCH /v1/controllers/{controller_id}/config`."""

    @extend_schema(parameters=[IF_NONE_MATCH], responses={200: ConfigSerializer, 304: None})
    def get(self, request, controller_id: str):
        user = request.user
        if is_controller(user) and user.controller_code == controller_id:
            # The gateway's conditional GET: one read decides 304 before anything is loaded.
            controller, pk = None, user.controller_pk
        else:
            controller = caller_controller(request, controller_id)  # 404 before 304
            pk = controller.pk
        current = services.current_version(pk)
        if current is not None and none_match(request, current[0]):
            return Response(status=304, headers={"ETag": etag(current[0])})
        controller = controller or caller_controller(request, controller_id)
        return config_response(services.effective_config_for(controller))

    @extend_schema(parameters=[IF_MATCH], request=SETTINGS_BODY, responses={200: ConfigSerializer})
    def put(self, request, controller_id: str):
        """Replace the controller's overrides (a sparse settings document)."""
        return self._write(request, controller_id, replace=True)

    @extend_schema(parameters=[IF_MATCH], request=SETTINGS_BODY, responses={200: ConfigSerializer})
    def patch(self, request, controller_id: str):
        """Merge into the controller's overrides (JSON merge patch: null inherits again)."""
        return self._write(request, controller_id, replace=False)

    def _write(self, request, controller_id: str, *, replace: bool):
        controller = caller_controller(request, controller_id)
        check_may_configure(request.user, controller.site)
        config = services.update_controller_config(
            controller,
            request.data,
            if_match=required_if_match(request),
            by=principal_label(request.user),
            replace=replace,
        )
        return config_response(config)


class ControllerConfigVersionView(APIView):
    """`GET /v1/controllers/{controller_id}/config/version`: the cheap poll."""

    @extend_schema(responses={200: VersionPollSerializer})
    def get(self, request, controller_id: str):
        user = request.user
        if is_controller(user):
            if user.controller_code != controller_id:
                raise NotFound()
            current = services.current_version(user.controller_pk)
        else:
            current = services.current_version_by_code(controller_id, visible_site_pks(user))
        if current is None:  # unknown or another site's (404), or it missed its version 1
            controller = caller_controller(request, controller_id)
            services.effective_config_for(controller)
            current = services.current_version(controller.pk)
        return Response(
            {"version": current[0], "updated_at": current[1]}, headers={"ETag": etag(current[0])}
        )


class ControllerConfigStateView(APIView):
    """`GET /v1/controllers/{controller_id}/config/state`: current against applied version."""

    @extend_schema(responses={200: ConfigStateSerializer})
    def get(self, request, controller_id: str):
        controller = caller_controller(request, controller_id)
        services.effective_config_for(controller)  # makes sure version 1 exists
        state = ConfigState.objects.get(pk=controller.pk)
        return Response(
            ConfigStateSerializer(
                {
                    "controller_id": controller.code,
                    "version": state.version,
                    "updated_at": state.updated_at,
                    "applied_version": state.applied_version,
                    "applied_at": state.applied_at,
                    "drift": state.drift,
                }
            ).data
        )


class ControllerConfigVersionsView(generics.ListAPIView):
    """`GET /v1/controllers/{controller_id}/config/versions`: newest first."""

    serializer_class = ConfigVersionSerializer
    pagination_class = envelope("versions")
    queryset = ConfigVersion.objects.none()

    def get_queryset(self):
        controller = caller_controller(self.request, self.kwargs["controller_id"])
        return ConfigVersion.objects.filter(controller=controller).order_by("-number")


class ControllerConfigVersionDetailView(APIView):
    """`GET /v1/controllers/{controller_id}/config/versions/{n}`."""

    @extend_schema(responses={200: ConfigVersionDetailSerializer})
    def get(self, request, controller_id: str, number: int):
        controller = caller_controller(request, controller_id)
        return Response(
            ConfigVersionDetailSerializer(services.get_version(controller, number)).data
        )


class ControllerConfigVersionDiffView(APIView):
    """`GET .../config/versions/{n}/diff?against=m`: what changed from m (default n-1) to n."""

    @extend_schema(
        parameters=[OpenApiParameter("against", int, description="Default: the previous one.")],
        responses={200: DIFF},
    )
    def get(self, request, controller_id: str, number: int):
        controller = caller_controller(request, controller_id)
        against = request.query_params.get("against", str(number - 1))
        if not against.isdigit():
            raise serializers.ValidationError({"against": ["Must be a version number."]})
        before = services.get_version(controller, int(against))
        after = services.get_version(controller, number)
        return Response(
            {
                "from": before.number,
                "to": after.number,
                "changes": services.diff_versions(before, after),
            }
        )


class ControllerConfigRestoreView(APIView):
    """`POST .../config/versions/{n}/restore`: a new version with the settings of version n.
    `If-Match` is optional here; when sent, a stale one answers 412."""

    @extend_schema(
        parameters=[IF_MATCH_OPTIONAL],
        request=None,
        responses={200: ConfigSerializer},
    )
    def post(self, request, controller_id: str, number: int):
        controller = caller_controller(request, controller_id)
        check_may_configure(request.user, controller.site)
        if_match = required_if_match(request) if request.headers.get("If-Match") else None
        config = services.restore_version(
            controller, number, by=principal_label(request.user), if_match=if_match
        )
        return config_response(config)


class SiteConfigView(APIView):
    """`GET`/`PUT`/`PATCH /v1/config/{site_id}`: the site-level settings."""

    @extend_schema(
        parameters=[IF_NONE_MATCH], responses={200: SiteConfigDocumentSerializer, 304: None}
    )
    def get(self, request, site_id: str):
        document = services.site_config_document(caller_site(request, site_id))
        if none_match(request, document["revision"]):
            return Response(status=304, headers={"ETag": etag(document["revision"])})
        return site_response(document)

    @extend_schema(
        parameters=[IF_MATCH],
        request=SETTINGS_BODY,
        responses={200: SiteConfigDocumentSerializer},
    )
    def put(self, request, site_id: str):
        """Replace the site's settings; what is left out takes the defaults."""
        return self._write(request, site_id, replace=True)

    @extend_schema(
        parameters=[IF_MATCH],
        request=SETTINGS_BODY,
        responses={200: SiteConfigDocumentSerializer},
    )
    def patch(self, request, site_id: str):
        """Merge into the site's settings (JSON merge patch: null takes the default again)."""
        return self._write(request, site_id, replace=False)

    def _write(self, request, site_id: str, *, replace: bool):
        site = caller_site(request, site_id)
        check_may_configure(request.user, site)
        document = services.update_site_config(
            site,
            request.data,
            if_match=required_if_match(request),
            by=principal_label(request.user),
            replace=replace,
        )
        return site_response(document)

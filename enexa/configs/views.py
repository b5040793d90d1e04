"""Configuration endpoints: a controller's config (ETag, cheap version poll), the site's
config, writes with If-Match, history, diff and rollback."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers
from rest_framework.response import Response

from enexa.api.etags import etag, none_match, required_if_match
from enexa.api.pagination import envelope
from enexa.api.schema import json_body
from enexa.api.scoping import ControllerLookupMixin, ControllerView, SiteView
from enexa.core.principals import principal_label

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


# Staff and the site's operators write configuration; controllers and viewers read it.
CONFIGURE_DENIED = "Only staff and the site's operators may change configuration."


def config_response(config: dict) -> Response:
    return Response(config, headers={"ETag": etag(config["version"])})


def site_response(document: dict) -> Response:
    return Response(document, headers={"ETag": etag(document["revision"])})


class ControllerConfigView(ControllerView):
    """`GET`/`PUT`/`PATCH /v1/controllers/{controller_id}/config`."""

    write_denied = CONFIGURE_DENIED

    @extend_schema(parameters=[IF_NONE_MATCH], responses={200: ConfigSerializer, 304: None})
    def get(self, request, controller_id: str):
        # The gateway's conditional GET: one read decides 304 before its controller is loaded.
        current = services.current_version(self.controller_pk)
        if current is not None and none_match(request, current[0]):
            return Response(status=304, headers={"ETag": etag(current[0])})
        return config_response(services.effective_config_for(self.controller))

    @extend_schema(parameters=[IF_MATCH], request=SETTINGS_BODY, responses={200: ConfigSerializer})
    def put(self, request, controller_id: str):
        """Replace the controller's overrides (a sparse settings document)."""
        return self._write(request, replace=True)

    @extend_schema(parameters=[IF_MATCH], request=SETTINGS_BODY, responses={200: ConfigSerializer})
    def patch(self, request, controller_id: str):
        """Merge into the controller's overrides (JSON merge patch: null inherits again)."""
        return self._write(request, replace=False)

    def _write(self, request, *, replace: bool):
        config = services.update_controller_config(
            self.controller,
            request.data,
            if_match=required_if_match(request),
            by=principal_label(request.user),
            replace=replace,
        )
        return config_response(config)


class ControllerConfigVersionView(ControllerView):
    """`GET /v1/controllers/{controller_id}/config/version`: the cheap poll."""

    @extend_schema(responses={200: VersionPollSerializer})
    def get(self, request, controller_id: str):
        current = services.current_version(self.controller_pk)
        if current is None:  # it missed its version 1
            services.effective_config_for(self.controller)
            current = services.current_version(self.controller_pk)
        return Response(
            {"version": current[0], "updated_at": current[1]}, headers={"ETag": etag(current[0])}
        )


class ControllerConfigStateView(ControllerView):
    """`GET /v1/controllers/{controller_id}/config/state`: current against applied version."""

    @extend_schema(responses={200: ConfigStateSerializer})
    def get(self, request, controller_id: str):
        controller = self.controller
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


class ControllerConfigVersionsView(ControllerLookupMixin, generics.ListAPIView):
    """`GET /v1/controllers/{controller_id}/config/versions`: newest first."""

    serializer_class = ConfigVersionSerializer
    pagination_class = envelope("versions")
    queryset = ConfigVersion.objects.none()

    def get_queryset(self):
        return ConfigVersion.objects.filter(controller=self.controller).order_by("-number")


class ControllerConfigVersionDetailView(ControllerView):
    """`GET /v1/controllers/{controller_id}/config/versions/{n}`."""

    @extend_schema(responses={200: ConfigVersionDetailSerializer})
    def get(self, request, controller_id: str, number: int):
        return Response(
            ConfigVersionDetailSerializer(services.get_version(self.controller, number)).data
        )


class ControllerConfigVersionDiffView(ControllerView):
    """`GET .../config/versions/{n}/diff?against=m`: what changed from m (default n-1) to n."""

    @extend_schema(
        parameters=[OpenApiParameter("against", int, description="Default: the previous one.")],
        responses={200: DIFF},
    )
    def get(self, request, controller_id: str, number: int):
        controller = self.controller
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


class ControllerConfigRestoreView(ControllerView):
    """`POST .../config/versions/{n}/restore`: a new version with the settings of version n.
    `If-Match` is optional here; when sent, a stale one answers 412."""

    write_denied = CONFIGURE_DENIED

    @extend_schema(
        parameters=[IF_MATCH_OPTIONAL],
        request=None,
        responses={200: ConfigSerializer},
    )
    def post(self, request, controller_id: str, number: int):
        if_match = required_if_match(request) if request.headers.get("If-Match") else None
        config = services.restore_version(
            self.controller, number, by=principal_label(request.user), if_match=if_match
        )
        return config_response(config)


class SiteConfigView(SiteView):
    """`GET`/`PUT`/`PATCH /v1/config/{site_id}`: the site-level settings."""

    write_denied = CONFIGURE_DENIED

    @extend_schema(
        parameters=[IF_NONE_MATCH], responses={200: SiteConfigDocumentSerializer, 304: None}
    )
    def get(self, request, site_id: str):
        document = services.site_config_document(self.site)
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
        return self._write(request, replace=True)

    @extend_schema(
        parameters=[IF_MATCH],
        request=SETTINGS_BODY,
        responses={200: SiteConfigDocumentSerializer},
    )
    def patch(self, request, site_id: str):
        """Merge into the site's settings (JSON merge patch: null takes the default again)."""
        return self._write(request, replace=False)

    def _write(self, request, *, replace: bool):
        document = services.update_site_config(
            self.site,
            request.data,
            if_match=required_if_match(request),
            by=principal_label(request.user),
            replace=replace,
        )
        return site_response(document)

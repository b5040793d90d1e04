"""Provisioning endpoints: a gateway registers, fetches its first config and activates; staff
issue enrollment secrets, rotate and revoke keys and move controllers through their lifecycle."""

from django.urls import reverse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from enexa.api.authentication import bearer_token
from enexa.api.errors import PROBLEM_CONTENT_TYPE
from enexa.api.permissions import IsController, IsStaff
from enexa.api.schema import ProblemSerializer
from enexa.api.scoping import ControllerView, SiteView
from enexa.core.errors import InvalidCredentials

from . import services
from .serializers import (
    ActivateRequestSerializer,
    ActivateResponseSerializer,
    ControllerAccessSerializer,
    ControllerStateResponseSerializer,
    ControllerStateSerializer,
    EnrollmentTokenRequestSerializer,
    EnrollmentTokenSerializer,
    InitialConfigSerializer,
    RegisterRequestSerializer,
    RegisterResponseSerializer,
    RevokeResponseSerializer,
    RotateRequestSerializer,
    RotateResponseSerializer,
)


class EnrollmentSecretAuthentication(BaseAuthentication):
    """Names the enrollment secret a registration carries (`Bearer enr_...`) for the schema
    and the 401 header; the register view checks the secret itself, against the site."""

    def authenticate(self, request):
        return None

    def authenticate_header(self, request):
        return 'Bearer realm="enexa"'


class EnrollmentSecretScheme(OpenApiAuthenticationExtension):
    target_class = "enexa.provisioning.views.EnrollmentSecretAuthentication"
    name = "enrollmentSecret"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A site's enrollment secret (`enr_<lookup>.<secret>`), created by "
            "staff, expiring and limited in uses.",
        }


def problems(*codes: int) -> dict:
    """Problem responses to declare beyond the ones ProblemAutoSchema adds."""
    return {(code, PROBLEM_CONTENT_TYPE): ProblemSerializer for code in codes}


class RegisterView(APIView):
    authentication_classes = [EnrollmentSecretAuthentication]
    permission_classes = [AllowAny]
    throttle_scope = "register"

    @extend_schema(
        summary="Register a controller with its site's enrollment secret",
        request=RegisterRequestSerializer,
        responses={201: RegisterResponseSerializer, **problems(409)},
    )
    def post(self, request):
        secret = bearer_token(request)
        if not secret or not secret.startswith(services.ENROLLMENT_PREFIX):
            raise InvalidCredentials("Registration needs the site's enrollment secret.")
        body = RegisterRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        controller, api_key = services.register_controller(
            secret, body.validated_data["serial"], body.validated_data["site_id"]
        )
        return Response(
            {
                "controller_id": controller.code,
                "api_key": api_key,
                "config_url": request.build_absolute_uri(reverse("v1:provisioning-initial-config")),
            },
            status=status.HTTP_201_CREATED,
        )


class InitialConfigView(APIView):
    permission_classes = [IsController]

    @extend_schema(
        summary="First configuration and assets of the calling controller",
        responses={200: InitialConfigSerializer, **problems(403)},
    )
    def get(self, request):
        return Response(services.initial_config(request.user.controller_pk))


class ActivateView(APIView):
    permission_classes = [IsController]

    @extend_schema(
        summary="Go live after the gateway's self-tests",
        request=ActivateRequestSerializer,
        responses=ActivateResponseSerializer,
    )
    def post(self, request):
        body = ActivateRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        activated = services.activate_controller(
            request.user.controller_pk,
            body.validated_data["status"],
            body.validated_data["tests_passed"],
            body.validated_data["detail"],
        )
        result = {"activated": activated}
        if not activated:
            result["detail"] = (
                "The controller stays inactive until it reports ready with its tests passed."
            )
        return Response(result)


class EnrollmentTokenView(SiteView):
    permission_classes = [IsStaff]

    @extend_schema(
        summary="Create an enrollment secret for the site (staff; shown once)",
        request=EnrollmentTokenRequestSerializer,
        responses={201: EnrollmentTokenSerializer},
    )
    def post(self, request, site_id: str):
        site = self.site
        body = EnrollmentTokenRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        token, secret = services.create_enrollment_token(
            site,
            body.validated_data["uses"],
            body.validated_data["ttl_s"],
            created_by=request.user,
        )
        return Response(
            {
                "id": f"{services.ENROLLMENT_PREFIX}{token.lookup}",
                "site_id": site.code,
                "secret": secret,
                "expires_at": token.expires_at,
                "uses_left": token.uses_left,
            },
            status=status.HTTP_201_CREATED,
        )


class RotateApiKeyView(ControllerView):
    permission_classes = [IsStaff]

    @extend_schema(
        summary="Issue a new API key; the old one works for the grace period",
        request=RotateRequestSerializer,
        responses=RotateResponseSerializer,
    )
    def post(self, request, controller_id: str):
        controller = self.controller
        body = RotateRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        api_key, deadline = services.rotate_api_key(controller, body.validated_data.get("grace_s"))
        return Response(
            {
                "controller_id": controller.code,
                "api_key": api_key,
                "previous_keys_expire_at": deadline,
            }
        )


class RevokeApiKeysView(ControllerView):
    permission_classes = [IsStaff]

    @extend_schema(
        summary="Revoke every API key of the controller at once",
        request=None,
        responses=RevokeResponseSerializer,
    )
    def post(self, request, controller_id: str):
        controller = self.controller
        return Response(
            {"controller_id": controller.code, "revoked": services.revoke_api_keys(controller)}
        )


class ControllerStateView(ControllerView):
    permission_classes = [IsStaff]

    @extend_schema(
        summary="Suspend, resume, decommission or reset a controller (staff)",
        request=ControllerStateSerializer,
        responses={200: ControllerStateResponseSerializer, **problems(409)},
    )
    def post(self, request, controller_id: str):
        controller = self.controller
        body = ControllerStateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        controller = services.set_controller_state(controller, body.validated_data["state"])
        return Response({"id": controller.code, "state": controller.state})


class ControllerAccessView(ControllerView):
    permission_classes = [IsStaff]

    @extend_schema(
        summary="The controller's IP allowlist (staff)",
        responses={200: ControllerAccessSerializer, **problems(403)},
    )
    def get(self, request, controller_id: str):
        controller = self.controller
        return Response({"ip_allowlist": services.ip_allowlist_of(controller)})

    @extend_schema(
        summary="Replace the controller's IP allowlist (staff; empty allows any)",
        request=ControllerAccessSerializer,
        responses=ControllerAccessSerializer,
    )
    def put(self, request, controller_id: str):
        controller = self.controller
        body = ControllerAccessSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        allowlist = services.set_ip_allowlist(controller, body.validated_data["ip_allowlist"])
        return Response({"ip_allowlist": allowlist})

"""Permission classes: who may write what."""

from rest_framework import permissions

from enexa.core.principals import is_controller, is_staff_user


class IsStaffOrReadOnly(permissions.BasePermission):
    """Everyone authenticated reads (within scope); only staff write."""

    def has_permission(self, request, view):
        if not request.user or not request.user.is_authenticated:
            return False
        return request.method in permissions.SAFE_METHODS or is_staff_user(request.user)


class IsStaff(permissions.BasePermission):
    def has_permission(self, request, view):
        return is_staff_user(request.user)


class IsController(permissions.BasePermission):
    """Only a controller's API key (provisioning and gateway calls)."""

    def has_permission(self, request, view):
        return is_controller(request.user)

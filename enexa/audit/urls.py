"""Routes of enexa.audit under /v1/."""

from django.urls import path  # noqa: F401

urlpatterns: list = []

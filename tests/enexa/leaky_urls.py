"""The project's URLs plus one deliberately unscoped endpoint, to prove the access matrix
catches such a mistake (tests/enexa/test_access_matrix.py)."""

from django.urls import include, path
from rest_framework.decorators import api_view
from rest_framework.response import Response

from enexa.registry.models import Site
from enexa.urls import urlpatterns as project_patterns


@api_view(["GET"])
def unscoped_site(request, site_id: str):
    """Wrong on purpose: looks the site up without narrowing to the caller's sites."""
    site = Site.objects.get(code=site_id)
    return Response({"id": site.code, "name": site.name})


urlpatterns = [
    path("v1/leaky/", include(([path("sites/<str:site_id>", unscoped_site)], "leaky"))),
    *project_patterns,
]

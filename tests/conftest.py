"""Fixtures shared by every test: API clients for staff, operators, controllers and anonymous
callers, and a logged-in client of the web admin."""

import pytest
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from enexa.provisioning.services import issue_api_key
from tests.factories import MembershipFactory, SiteFactory, StaffFactory, UserFactory


def jwt_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


def controller_client(controller) -> APIClient:
    """A client presenting a real API key of `controller`, issued by provisioning."""
    _, api_key = issue_api_key(controller)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    return client


@pytest.fixture
def admin_client(db) -> Client:
    """A superuser logged in to the web admin (instead of pytest-django's `admin_client`)."""
    client = Client()
    client.force_login(StaffFactory(username="root", is_superuser=True))
    return client


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


@pytest.fixture
def staff(db):
    return StaffFactory()


@pytest.fixture
def staff_client(staff) -> APIClient:
    return jwt_client(staff)


@pytest.fixture
def site(db):
    return SiteFactory(code="SITE001", name="Demo hub")


@pytest.fixture
def other_site(db):
    return SiteFactory(code="SITE002", name="Other hub")


@pytest.fixture
def operator(site):
    user = UserFactory(username="operator")
    MembershipFactory(user=user, site=site)
    return user


@pytest.fixture
def operator_client(operator) -> APIClient:
    return jwt_client(operator)


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Each test starts with no calls counted against any rate limit."""
    from enexa.api.throttling import reset_counters

    reset_counters()

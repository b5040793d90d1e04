"""Fixtures shared by every test: API clients for staff, operators, controllers and anonymous
callers, a logged-in client of the web admin, and the Redis server of the tests that need one;
the order `make test` hands files to its parallel workers in, and the integration tests' figures
in the closing summary."""

import json
import os

import pytest
from django.test import Client
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from enexa.provisioning.services import issue_api_key
from tests.factories import MembershipFactory, SiteFactory, StaffFactory, UserFactory

# Tests that need Redis use this server; each writes only keys of its own (a unique prefix or
# queue name) and deletes only those, so it may be a server other programs use too.
TEST_REDIS_URL = os.environ.get("ENEXA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Enexa servers the tests start (demo.enexa) hash passwords cheaply: the live tests are about
# the API, not about the cost of guessing a password.
os.environ.setdefault("ENEXA_LIVE_SETTINGS", "tests.integration.live_settings")
# Property tests judge answers, not speed: on a busy machine (tests run in parallel with other
# work) a per-example deadline fails correct code. Timing belongs in `make bench`.
hypothesis_settings.register_profile("enexa", deadline=None)
hypothesis_settings.load_profile("enexa")


def require_redis(url: str = TEST_REDIS_URL) -> str:
    """`url` once a Redis server answers there; else the test fails (never skips: a run without
    Redis must not pass as green) with one line saying what is missing."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        return url
    except redis.RedisError as exc:
        problem = str(exc)
    # Outside the `except`: the one line, without the client's chained traceback.
    pytest.fail(
        f"this test needs a Redis server at {url} (start one, e.g. apt-get install "
        f"redis-server, or set ENEXA_TEST_REDIS_URL): {problem}",
        pytrace=False,
    )


def pytest_sessionstart(session):
    """DATABASE_URL naming a PostgreSQL server that does not answer: one line, instead of an
    error at every database test."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        return  # SQLite (the default) needs no server
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=5).close()
        return
    except psycopg.OperationalError as exc:
        problem = " ".join(str(exc).split())
    pytest.exit(
        f"DATABASE_URL names a PostgreSQL server that does not answer ({problem}); start it, "
        "or unset DATABASE_URL to test on SQLite",
        returncode=1,
    )


# The files that take longest (`pytest --durations`), longest first: `make test` hands out
# whole files to its workers (pytest-xdist `--dist loadfile --no-loadscope-reorder`) in
# collection order, so these start first, each on its own worker, and their minutes of waiting
# overlap the rest instead of trailing after it.
LONGEST_FILES = (
    "tests/integration/test_outages.py",
    "tests/integration/test_demo_lifecycle.py",
    "tests/integration/test_autonomy.py",
    "tests/integration/test_schemathesis.py",
    "tests/integration/test_system.py",
    "tests/integration/test_security_live.py",
)


def pytest_collection_modifyitems(config, items):
    """The longest files first, then the other files with integration tests, then the rest,
    each in its own order."""
    root = config.rootpath
    rank = {root / name: n for n, name in enumerate(LONGEST_FILES)}
    slow = {item.path for item in items if item.get_closest_marker("integration")}
    items.sort(key=lambda item: (rank.get(item.path, len(rank)), item.path not in slow))


# What integration tests measured (their `figures` fixture), by test, for the closing summary.
FIGURES: list[tuple[str, dict]] = []


def pytest_runtest_logreport(report):
    if report.when == "teardown":
        name = report.nodeid.rsplit("::", 1)[-1]
        FIGURES.extend((name, value) for key, value in report.user_properties if key == "figures")


def pytest_terminal_summary(terminalreporter, config):
    if not FIGURES or hasattr(config, "workerinput"):  # a pytest-xdist worker prints nothing
        return
    terminalreporter.section("figures reported by integration tests")
    for name, measured in FIGURES:
        terminalreporter.write_line(f"{name}: {json.dumps(measured, default=str)}")


@pytest.fixture
def redis_url() -> str:
    """The tests' Redis server (ENEXA_TEST_REDIS_URL), which must be running."""
    return require_redis()


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

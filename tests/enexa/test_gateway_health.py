"""Enexa's worker polls Amperio's `GET /v1/health` and keeps each site's gateway health, which
`GET /v1/sites/{id}/status` shows and alert rules can query."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enexa.telemetry import tasks
from enexa.telemetry.models import SiteStatus
from enexa.telemetry.reports import gateway_health_summary
from tests.httppeer import HttpPeer

DEGRADED_SITE = {
    "status": "degraded",
    "modbus": {"link_up": False, "last_read_at": "2026-12-05T04:00:00Z"},
    "watchdog": {"last_beat_at": "2026-12-05T04:00:00Z", "beating": False, "withheld": True},
    "buffer": {"depth": 17, "readings": 15, "events": 2},
    "mode": "auto",
    "autonomy": "safe_local",
    "config_version": 4,
    "last_report_at": "2026-12-05T04:00:01Z",
    "last_report_age_s": 42.25,
    "unconfirmed_commands": 1,
}


@pytest.fixture
def amperio(settings):
    """A real HTTP server standing in for the Amperio backend; its health is `peer.health`."""

    def handle(method, path, headers, body):
        if headers.get("authorization") != "Bearer svc-token":
            return 401, {"title": "Unauthorized"}
        return 200, peer.health

    with HttpPeer(handle) as peer:
        peer.health = {"status": "degraded", "sites": {}, "enexa": {"reachable": True}}
        settings.ENEXA_AMPERIO_URL = peer.url
        settings.ENEXA_AMPERIO_TOKEN = "svc-token"
        yield peer


@pytest.mark.django_db
def test_the_polled_gateway_health_of_a_site_shows_in_its_status(site, staff_client, amperio):
    amperio.health["sites"]["SITE001"] = DEGRADED_SITE

    assert tasks.poll_gateway_health() == {"result": "recorded", "sites": 1}

    gateway = staff_client.get("/v1/sites/SITE001/status").json()["gateway"]
    assert {k: v for k, v in gateway.items() if k != "at"} == {
        "status": "degraded",
        "modbus_link_up": False,
        "watchdog_beating": False,
        "mode": "auto",
        "autonomy": "safe_local",
        "buffer_depth": 17,
        "unconfirmed_commands": 1,
        "last_report_at": "2026-12-05T04:00:01Z",
        "last_report_age_s": 42.2,
    }
    status = SiteStatus.objects.get(site=site)
    assert gateway["at"].startswith(status.gateway_health_at.strftime("%Y-%m-%dT%H:%M:%S"))


@pytest.mark.django_db
def test_alert_rules_can_find_sites_by_their_gateways_link_and_watchdog(site, other_site, amperio):
    healthy = {**DEGRADED_SITE, "status": "ok", "modbus": {"link_up": True}}
    healthy["watchdog"] = {"beating": True}
    amperio.health["sites"] = {"SITE001": DEGRADED_SITE, "SITE002": healthy}

    tasks.poll_gateway_health()

    def codes(**lookup):
        return set(SiteStatus.objects.filter(**lookup).values_list("site__code", flat=True))

    assert codes(gateway_health__modbus_link_up=False) == {"SITE001"}
    assert codes(gateway_health__watchdog_beating=False) == {"SITE001"}
    assert codes(gateway_health__status="ok") == {"SITE002"}


@pytest.mark.django_db
def test_a_site_amperio_does_not_list_is_not_reported(site, other_site, staff_client, amperio):
    amperio.health["sites"]["SITE001"] = DEGRADED_SITE

    tasks.poll_gateway_health()

    gateway = staff_client.get("/v1/sites/SITE002/status").json()["gateway"]
    assert gateway["status"] == "not_reported"
    assert gateway["modbus_link_up"] is None


@pytest.mark.django_db
def test_a_single_gateways_health_counts_its_overall_status_for_its_site(site, amperio):
    single = {k: v for k, v in DEGRADED_SITE.items() if k != "status"}
    amperio.health = {"status": "ok", "sites": {"SITE001": single}}

    tasks.poll_gateway_health()

    assert SiteStatus.objects.get(site=site).gateway_health["status"] == "ok"


@pytest.mark.django_db
def test_when_amperio_does_not_answer_the_last_health_stays_with_its_time(site, amperio, settings):
    amperio.health["sites"]["SITE001"] = DEGRADED_SITE
    tasks.poll_gateway_health()
    before = SiteStatus.objects.get(site=site)
    settings.ENEXA_AMPERIO_URL = "http://127.0.0.1:9"  # discard port: nothing listens

    assert tasks.poll_gateway_health() == {"result": "unreachable", "sites": 0}

    after = SiteStatus.objects.get(site=site)
    assert (after.gateway_health, after.gateway_health_at) == (
        before.gateway_health,
        before.gateway_health_at,
    )


@pytest.mark.django_db
def test_without_a_service_token_amperio_is_not_asked(site, settings):
    settings.ENEXA_AMPERIO_TOKEN = ""
    assert tasks.poll_gateway_health() == {"result": "skipped", "sites": 0}
    assert not SiteStatus.objects.exclude(gateway_health=None).exists()


def test_hostile_health_values_are_dropped_not_stored():
    hostile = {
        "status": "ok",
        "modbus": "up",
        "watchdog": {"beating": "yes"},
        "buffer": {"depth": -1},
        "mode": "x" * 1000,
        "last_report_at": "not a time",
        "last_report_age_s": float("nan"),
        "unconfirmed_commands": 2**40,
    }
    summary = gateway_health_summary(hostile, "ok", datetime(2026, 12, 5, tzinfo=UTC))
    assert summary["modbus_link_up"] is None and summary["watchdog_beating"] is None
    assert summary["buffer_depth"] is None and summary["unconfirmed_commands"] is None
    assert summary["mode"] == "x" * 32
    assert summary["last_report_at"] is None and summary["last_report_age_s"] is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4)
    ),
    max_leaves=20,
)
SITE_KEYS = st.sampled_from(
    ["status", "modbus", "watchdog", "buffer", "mode", "autonomy", "last_report_at"]
    + ["last_report_age_s", "unconfirmed_commands", "link_up", "beating", "depth"]
)


@given(
    st.one_of(JSON, st.dictionaries(SITE_KEYS, JSON, max_size=10)),
    JSON,
)
def test_any_json_from_amperio_gives_a_summary_of_the_documented_shape(site, fleet_status):
    summary = gateway_health_summary(site, fleet_status, datetime(2026, 12, 5, tzinfo=UTC))
    assert summary["status"] in ("ok", "degraded", "not_reported")
    for key in ("modbus_link_up", "watchdog_beating"):
        assert summary[key] is None or isinstance(summary[key], bool)
    for key in ("buffer_depth", "unconfirmed_commands"):
        assert summary[key] is None or (isinstance(summary[key], int) and summary[key] >= 0)
    for key in ("mode", "autonomy"):
        assert summary[key] is None or len(summary[key]) <= 32
    age = summary["last_report_age_s"]
    assert age is None or isinstance(age, float)
    assert summary["at"] == "2026-12-05T00:00:00Z"

"""Amperio as one backend for many sites: a shared store (SQLite or PostgreSQL), commands
published on their own site's queue only, outcomes and health reported back by the gateways."""

import base64
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import requests
from kombu.transport import filesystem

from amperio import gateway as gateway_module
from amperio.backend import tasks as backend_tasks
from amperio.backend.fleet import UnknownSite, accept, fleet_health, served_sites
from amperio.backend.reports import OutcomeRelay
from amperio.backend.store import BackendStore
from amperio.celery import make_app
from amperio.dispatch.errors import LimitsUnknown
from amperio.gateway import Gateway
from amperio.settings import load
from amperio.state import GatewayState
from shared.dispatch import DispatchCommand
from shared.fields import format_timestamp
from tests.amperio.limits import LIMITS
from tests.amperio.test_amperio_api import AmperioApi, dispatch
from tests.lifetimes import stopped_at_end

POSTGRES = "postgres://postgres@127.0.0.1:5432"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database_url(request, tmp_path_factory):
    """A fresh store of each kind; the PostgreSQL database is dropped after the module."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('backend') / 'backend.sqlite3'}"
        return
    name = f"amperio_fleet_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(f"{POSTGRES}/postgres", autocommit=True)
    except psycopg.OperationalError:
        pytest.fail("PostgreSQL needed at 127.0.0.1:5432 (the backend's shared store)")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{POSTGRES}/{name}"
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def broker_messages(folder, queue):
    """(task name, args) of each message waiting on `queue` of a filesystem broker, taken."""
    out = []
    for path in sorted((folder / "queue").glob(f"*.{queue}.msg")):
        message = json.loads(path.read_text())
        args = json.loads(base64.b64decode(message["body"]))[0]
        out.append((message["headers"]["task"], args))
        path.unlink()
    return out


def run_backend_worker(folder):
    """What `python -m amperio backend-worker` does with the gateways' reports."""
    known = {t.name: t for t in (backend_tasks.record_outcome, backend_tasks.record_report)}
    for task, args in broker_messages(folder, "amperio.backend"):
        known[task](*args)


@pytest.fixture(scope="module")
def fleet(database_url, tmp_path_factory):
    """The backend API (gunicorn) on a shared store and a filesystem broker, serving SITEA and
    SITEB (configured); SITEC is served by no one."""
    tmp = tmp_path_factory.mktemp("fleet")
    broker = tmp / "broker"
    api = AmperioApi(
        tmp,
        {
            "AMPERIO_DATABASE_URL": database_url,
            "AMPERIO_SITES": "SITEA,SITEB",
            "CELERY_BROKER_URL": f"filesystem://localhost/{broker}",
        },
    )
    api.broker = broker
    api.store = BackendStore(database_url)
    yield from stopped_at_end(api)


@pytest.fixture
def gateway_a(fleet, tmp_path, sim, monkeypatch):
    """SITEA's gateway: its own state directory and ChargePost, reporting to the backend on
    the fleet's broker; the backend worker's tasks write to the fleet's store."""
    state_dir = tmp_path / "site-a"
    state_dir.mkdir()
    (state_dir / "config.json").write_text(
        json.dumps({"version": 7, "settings": {"setpoint_validity_s": 300}, "limits": LIMITS})
    )
    sim.state.watchdog_timeout_s = 100_000
    settings = replace(
        load(),
        site_id="SITEA",
        state_dir=state_dir,
        modbus_port=sim.port,
        broker_url=f"filesystem://localhost/{fleet.broker}",
        backend_reports=True,
        database_url="",
    )
    # kombu's file transport keeps declared exchanges in one state per process: forget those
    # of the previous module's broker folder, or this one's would never be declared.
    filesystem.Transport.global_state.clear()
    app = make_app(settings)
    monkeypatch.setattr(
        gateway_module, "publish", lambda task, args, queue: app.send_task(task, args, queue=queue)
    )
    monkeypatch.setattr(backend_tasks, "store", lambda: fleet.store)
    gw = Gateway(settings)
    now = datetime.now(UTC)
    GatewayState(settings.state_path).update(
        {
            "modbus_link_up": True,
            "watchdog_last_beat_at": format_timestamp(now),
            "enexa_reachable": True,
            "config_version": 7,
        }
    )
    gateway_module.report_backend(gw)
    run_backend_worker(fleet.broker)
    yield gw
    for client in gw._clients.values():
        client.close()


def for_site(site_id, **extra):
    return {**dispatch(**extra), "site_id": site_id}


def test_a_command_goes_to_its_own_sites_queue_only_and_its_outcome_is_answered(fleet, gateway_a):
    body = for_site("SITEA", params={"power_kw": 30})
    response = fleet.post(body)
    assert response.status_code == 202, response.text
    assert fleet.status(body["command_id"]).json()["status"] == "queued"
    assert broker_messages(fleet.broker, "amperio.site.SITEB") == []
    messages = broker_messages(fleet.broker, "amperio.site.SITEA")
    assert messages == [("amperio.tasks.receive_command", [{**body, "params": {"power_kw": 30}}])]

    # SITEA's worker runs it; the outcome travels back on the broker.
    gateway_module.receive_command(messages[0][1][0], gateway_a)
    run_backend_worker(fleet.broker)
    record = fleet.status(body["command_id"]).json()
    assert record["status"] == "applied", record
    assert record["registers"]["bat1_power_setpoint_kw"] == 15.0
    assert record["site_id"] == "SITEA"


def test_a_command_for_a_site_the_backend_does_not_serve_is_404_and_stored_nowhere(fleet):
    body = for_site("SITEC")
    response = fleet.post(body)
    assert response.status_code == 404
    assert response.json()["status"] == 404
    assert fleet.status(body["command_id"]).status_code == 404
    assert broker_messages(fleet.broker, "amperio.site.SITEC") == []


def test_a_served_site_whose_gateway_never_reported_its_limits_is_503(fleet):
    response = fleet.post(for_site("SITEB"))
    assert response.status_code == 503
    assert response.headers["Retry-After"]


def test_the_backend_checks_a_command_against_its_sites_reported_limits(fleet, gateway_a):
    body = for_site("SITEA", params={"power_kw": 500})
    response = fleet.post(body)
    assert response.status_code == 400
    assert "220" in response.json()["detail"]
    assert fleet.status(body["command_id"]).json()["status"] == "rejected"
    assert broker_messages(fleet.broker, "amperio.site.SITEA") == []


def test_a_replayed_command_id_is_answered_from_the_store_and_published_once(fleet, gateway_a):
    body = for_site("SITEA")
    assert fleet.post(body).status_code == 202
    assert fleet.post(body).status_code == 200
    assert fleet.post({**body, "params": {"power_kw": 5}}).status_code == 422
    assert len(broker_messages(fleet.broker, "amperio.site.SITEA")) == 1


def test_health_lists_every_site_and_a_silent_gateway_makes_its_site_degraded(fleet, gateway_a):
    health = requests.get(f"{fleet.url}/v1/health", timeout=10).json()
    assert set(health["sites"]) == {"SITEA", "SITEB"}
    site_a = health["sites"]["SITEA"]
    assert site_a["status"] == "ok", site_a
    assert site_a["modbus"]["link_up"] is True
    assert site_a["config_version"] == 7
    assert site_a["buffer"]["depth"] >= 0
    assert site_a["last_report_age_s"] >= 0
    # SITEB's gateway never reported: its site is listed, degraded.
    assert health["sites"]["SITEB"]["status"] == "degraded"
    assert health["sites"]["SITEB"]["last_report_at"] is None
    assert health["status"] == "degraded"
    # A report from long ago arriving late (a backlog) does not replace the newer one ...
    fleet.store.record_report("SITEA", datetime(2000, 1, 1, tzinfo=UTC), None, {})
    assert fleet.store.site("SITEA").limits == LIMITS
    # ... and five minutes without a report make SITEA degraded.
    later = datetime.now(UTC) + timedelta(minutes=5)
    site_a = fleet_health(fleet.store, ("SITEA", "SITEB"), 30, later)["sites"]["SITEA"]
    assert site_a["status"] == "degraded"
    assert site_a["last_report_age_s"] > 30


def test_an_outcome_produced_while_the_broker_is_down_is_sent_when_it_returns(tmp_path):
    sent = []
    down = True

    def publish(task, args, queue):
        if down:
            raise ConnectionError("broker down")
        sent.append((task, args, queue))

    relay = OutcomeRelay(tmp_path / "relay.sqlite3", "SITEA", publish)

    class Record:
        command_id = "c1"

        def to_dict(self):
            return {"command_id": "c1", "status": "applied", "registers": {"x": 1}}

    relay(Record())
    assert relay.depth() == 1 and sent == []
    down = False
    assert OutcomeRelay(tmp_path / "relay.sqlite3", "SITEA", publish).send() == 1
    assert sent == [
        (
            "amperio.backend.record_outcome",
            ["SITEA", {"command_id": "c1", "status": "applied", "registers": {"x": 1}}],
            "amperio.backend",
        )
    ]
    assert relay.depth() == 0


def test_a_site_is_served_once_its_gateway_reports_and_a_failed_publish_is_failed_not_queued(
    tmp_path,
):
    store = BackendStore(f"sqlite:///{tmp_path / 'backend.sqlite3'}")
    cmd = DispatchCommand.from_dict(for_site("SITED"))
    with pytest.raises(UnknownSite):
        accept(store, (), cmd, lambda *message: None)
    store.record_report("SITED", datetime.now(UTC), LIMITS, {"status": "ok"})
    assert served_sites(store, ("SITEA",)) == ["SITEA", "SITED"]

    def broker_down(task, args, queue):
        raise ConnectionError("broker down")

    record, created = accept(store, (), cmd, broker_down)
    assert created
    assert record["status"] == "failed"
    assert "could not be reached" in record["detail"]
    assert record["finished_at"]


def test_a_command_the_gateway_cannot_check_is_reported_failed_not_left_queued(fleet, gateway_a):
    body = for_site("SITEA")
    assert fleet.post(body).status_code == 202
    ((_, args),) = broker_messages(fleet.broker, "amperio.site.SITEA")
    (gateway_a.settings.config_path).write_text(json.dumps({"version": 8, "settings": {}}))
    with pytest.raises(LimitsUnknown):
        gateway_module.receive_command(args[0], gateway_a)
    run_backend_worker(fleet.broker)
    record = fleet.status(body["command_id"]).json()
    assert record["status"] == "failed"
    assert "limits are unknown" in record["detail"]


def test_a_command_queued_in_the_backend_with_no_outcome_for_minutes_degrades_its_site(
    fleet, gateway_a
):
    assert fleet.post(for_site("SITEA")).status_code == 202
    broker_messages(fleet.broker, "amperio.site.SITEA")  # lost on the way
    later = datetime.now(UTC) + timedelta(minutes=3)
    # The gateway itself still reports, and all is well on site.
    fleet.store.record_report("SITEA", later, LIMITS, {"status": "ok"})
    site_a = fleet_health(fleet.store, (), 30, later)["sites"]["SITEA"]
    assert site_a["unconfirmed_commands"] >= 1
    assert site_a["status"] == "degraded"


def test_the_store_reconnects_after_postgresql_drops_its_connection(database_url):
    if not database_url.startswith("postgres"):
        pytest.skip("SQLite opens a connection per call")
    store = BackendStore(database_url)
    store.record_report("SITE001", datetime.now(UTC), LIMITS, {"status": "ok"})
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    with pytest.raises(psycopg.OperationalError):
        store.site("SITE001")  # the call that finds the connection gone fails...
    site = store.site("SITE001")  # ...and the next one opens a new one
    assert site is not None and site.limits == LIMITS

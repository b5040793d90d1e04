"""Real `celery worker` (and beat) processes, on Redis and on the embedded broker: each site's
worker consumes only its own site's queue; beat drives the config sync and the status report."""

import json
import sys
import uuid
from dataclasses import replace

import pytest
import redis

from amperio.celery import beat_schedule, filesystem_folder, make_app
from amperio.enexa_link.configsync import load_config
from amperio.procs import Proc, wait_until
from amperio.settings import load
from amperio.state import GatewayState
from tests.httppeer import HttpPeer

CONFIG = {
    "version": 9,
    "settings": {
        "watchdog": {"interval_s": 2, "timeout_s": 10},
        "telemetry": {"interval_s": 3, "batch_size": 10},
        "config_poll_interval_s": 1,
    },
    "limits": {},
}


def fake_enexa(method, path, headers, body):
    if path.endswith("/config/version"):
        return 200, {"version": CONFIG["version"], "updated_at": "2026-01-15T10:00:00Z"}
    if path.endswith("/config"):
        return 200, CONFIG, {"ETag": '"9"'}
    if path == "/v1/status":
        return 200, body
    return 404, {"detail": "Not found."}


@pytest.fixture
def gateway_env(tmp_path, monkeypatch):
    """The environment of a SITE001 gateway whose Enexa is a local HTTP peer."""
    with HttpPeer(fake_enexa) as peer:
        (tmp_path / "api_key").write_text("enx_test.key")
        env = {
            "AMPERIO_SITE_ID": "SITE001",
            "AMPERIO_STATE_DIR": str(tmp_path / "state"),
            "AMPERIO_KEY_FILE": str(tmp_path / "api_key"),
            "AMPERIO_ENEXA_URL": peer.url,
            "AMPERIO_CONTROLLER_ID": "CTRL001",
            # Nothing listens here: tasks that need the ChargePost fail fast, harmlessly.
            "AMPERIO_MODBUS_PORT": "9",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
        yield env, peer, tmp_path


def worker(name, queue, env, log_dir):
    return Proc(
        name,
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "amperio.celery",
            "worker",
            "-Q",
            queue,
            # The site worker runs on the app's default pool (threads); the watchdog on solo.
            *(["-P", "solo"] if queue.endswith(".watchdog") else []),
            "-n",
            f"{name}@test",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "info",
        ],
        log_dir,
        env,
    )


def dead(proc):
    if not proc.alive():
        raise AssertionError(f"{proc.name} exited:\n{proc.log()[-3000:]}")
    return False


def status_posts(peer):
    return [r for r in peer.requests if r["path"] == "/v1/status"]


def check_only_its_site_queue_is_consumed(
    env, peer, log_dir, waiting_on_other_site, site="SITE001", other="SITE002", other_app=None
):
    """`other_app`: the other site's gateway when its broker differs (another key prefix)."""
    app = make_app(load())
    # Another site's task goes first: if the worker took it, the peer would see two reports.
    (other_app or app).send_task("amperio.tasks.report_status", queue=f"amperio.site.{other}")
    app.send_task("amperio.tasks.report_status", queue=f"amperio.site.{site}")
    proc = worker("site-worker", f"amperio.site.{site}", env, log_dir)
    try:
        wait_until(lambda: status_posts(peer) or dead(proc), 60, what="the site's report")
        report = status_posts(peer)[0]
        assert report["body"]["site_id"] == site
        assert report["headers"]["authorization"] == "Bearer enx_test.key"
        # The worker drains its queue; the other site's message is still waiting in the broker.
        # (The report goes only at status.interval_s: forget the last one so it is due again,
        # once its task has finished: one still running makes the next run skip.)
        wait_until(lambda: "succeeded" in proc.log(), 30, what="the first report's task done")
        GatewayState(load().state_path).set("status_sent_at", None)
        app.send_task("amperio.tasks.report_status", queue=f"amperio.site.{site}")
        wait_until(lambda: len(status_posts(peer)) == 2, 30, what="a second report")
        assert waiting_on_other_site() == 1
        assert len(status_posts(peer)) == 2
    finally:
        proc.stop()
        print(proc.log()[-3000:])


@pytest.mark.integration
def test_a_worker_on_redis_consumes_only_its_sites_queue(gateway_env, monkeypatch, redis_url):
    env, peer, tmp_path = gateway_env
    # Sites, so queues and keys, of this run alone: the Redis server may serve others too, so
    # the test deletes only its own keys (never a flush).
    site, other = (f"SITE{uuid.uuid4().hex[:8].upper()}" for _ in range(2))
    env = {**env, "AMPERIO_SITE_ID": site, "CELERY_BROKER_URL": redis_url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    broker = redis.Redis.from_url(redis_url)
    try:
        check_only_its_site_queue_is_consumed(
            env, peer, tmp_path, lambda: broker.llen(f"amperio.site.{other}"), site, other
        )
    finally:
        for name in (site, other):  # the queue and kombu's bindings of it
            for key in broker.scan_iter(f"*amperio.site.{name}"):
                broker.delete(key)


@pytest.mark.integration
def test_on_a_redis_broker_a_worker_consumes_only_the_queues_under_its_key_prefix(
    gateway_env, monkeypatch, redis_url
):
    env, peer, tmp_path = gateway_env
    # The same site twice on one Redis database (staging beside production, or two test runs):
    # only the key prefix tells the two apart.
    site = f"SITE{uuid.uuid4().hex[:8].upper()}"
    mine, theirs = (f"test-{uuid.uuid4().hex[:8]}:" for _ in range(2))
    env = {
        **env,
        "AMPERIO_SITE_ID": site,
        "CELERY_BROKER_URL": redis_url,
        "AMPERIO_BROKER_KEY_PREFIX": mine,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    broker = redis.Redis.from_url(redis_url)
    try:
        check_only_its_site_queue_is_consumed(
            env,
            peer,
            tmp_path,
            lambda: broker.llen(f"{theirs}amperio.site.{site}"),
            site,
            site,
            other_app=make_app(replace(load(), broker_key_prefix=theirs)),
        )
    finally:
        for prefix in (mine, theirs):
            for key in broker.scan_iter(f"{prefix}*"):
                broker.delete(key)


@pytest.mark.integration
def test_a_worker_on_the_embedded_broker_consumes_only_its_sites_queue(gateway_env):
    env, peer, tmp_path = gateway_env
    folder = filesystem_folder(load())
    assert folder is not None and str(folder).startswith(str(tmp_path))

    def waiting():
        return len(list((folder / "queue").glob("*.amperio.site.SITE002.msg")))

    check_only_its_site_queue_is_consumed(env, peer, tmp_path, waiting)


@pytest.mark.integration
def test_beat_and_a_worker_on_the_embedded_broker_sync_the_config_and_report_status(gateway_env):
    from datetime import UTC, datetime

    from amperio.enexa_link.configsync import apply_config
    from amperio.state import GatewayState

    env, peer, tmp_path = gateway_env
    settings = load()
    # A provisioned gateway starts from the configuration provisioning gave it; this one polls
    # every second (with none, beat would poll at the default 30 s and the test wait for it).
    initial = {"version": 1, "settings": {"config_poll_interval_s": 1}}
    apply_config(settings, GatewayState(settings.state_path), initial, datetime.now(UTC))
    procs = [
        worker("site-worker", settings.site_queue, env, tmp_path),
        Proc(
            "beat",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "amperio.celery",
                "beat",
                "-l",
                "info",
                "-s",
                str(tmp_path / "beat-schedule"),
            ],
            tmp_path,
            env,
        ),
    ]
    try:
        wait_until(lambda: load_config(settings)["version"] == 9, 60, what="config applied")
        wait_until(
            lambda: any(r["body"].get("config_version") == 9 for r in status_posts(peer)),
            60,
            what="a status report with the applied version",
        )
        state = json.loads(json.dumps(load_config(settings)))
        assert state["settings"]["watchdog"] == {"interval_s": 2, "timeout_s": 10}
    finally:
        for proc in procs:
            proc.stop()
        print("\n".join(p.log()[-2000:] for p in procs))


def test_periodic_tasks_follow_the_configured_intervals_and_expire_before_their_next_run(
    tmp_path,
):
    settings = replace(load(), state_dir=tmp_path)
    config = {**CONFIG, "settings": {**CONFIG["settings"], "modbus": None}}
    from amperio.enexa_link.configsync import with_defaults

    schedule = beat_schedule(with_defaults(config), settings)
    assert (
        schedule["watchdog-beat"]["options"]["queue"] == f"amperio.site.{settings.site_id}.watchdog"
    )
    assert schedule["watchdog-beat"]["schedule"] == 2
    assert schedule["control-cycle"]["schedule"] == 3
    assert schedule["control-cycle"]["options"]["queue"] == settings.site_queue
    for entry in schedule.values():
        assert entry["options"]["expires"] <= entry["schedule"]


@pytest.mark.integration
def test_the_watchdog_worker_keeps_the_unit_alive_only_while_the_site_worker_controls_it(
    tmp_path, monkeypatch
):
    """Enexa down all along (503): the gateway still controls the unit. Then the site worker is
    killed: the watchdog worker, still running, withholds the heartbeat and the unit falls back."""
    from datetime import UTC, datetime

    from amperio.enexa_link.configsync import apply_config
    from amperio.simulator import ChargePostSimulator
    from amperio.state import GatewayState

    sim = ChargePostSimulator(port=0, speed=1, seed=2).start()
    with HttpPeer(lambda *args: (503, {"detail": "down"}, {"Retry-After": "1"})) as enexa:
        env = {
            "AMPERIO_SITE_ID": "SITE001",
            "AMPERIO_STATE_DIR": str(tmp_path / "state"),
            "AMPERIO_KEY_FILE": str(tmp_path / "api_key"),
            "AMPERIO_ENEXA_URL": enexa.url,
            "AMPERIO_CONTROLLER_ID": "CTRL001",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
        settings = load()
        config = {
            "version": 1,
            "settings": {
                "modbus": {"host": "127.0.0.1", "port": sim.port, "device_id": 1},
                # A timeout with room for late beats on a loaded machine (tests run in parallel).
                "watchdog": {"interval_s": 2, "timeout_s": 15},
                "telemetry": {"interval_s": 1, "batch_size": 50},
            },
        }
        apply_config(settings, GatewayState(settings.state_path), config, datetime.now(UTC))
        site = worker("site-worker", settings.site_queue, env, tmp_path)
        dog = worker("watchdog-worker", settings.watchdog_queue, env, tmp_path)
        beat = Proc(
            "beat", [sys.executable, "-m", "celery", "-A", "amperio.celery", "beat"], tmp_path, env
        )
        procs = [site, dog, beat]
        try:
            wait_until(
                lambda: sim.state.heartbeat >= 5 or dead(site) or dead(dog),
                60,
                what="five heartbeats",
            )
            assert sim.state.watchdog_timeout_s == 15
            assert not sim.state.safe
            site.kill9()
            wait_until(lambda: sim.state.safe or dead(dog), 60, what="the unit's safe state")
            assert dog.alive()
            state = GatewayState(settings.state_path)
            assert state.get("watchdog_beating") is False
            assert "stale" in state.get("watchdog_withheld")
        finally:
            for proc in procs:
                proc.stop()
            sim.stop()
            print("\n".join(p.log()[-2000:] for p in procs))


def test_the_embedded_broker_hands_each_message_over_whole_and_once_while_it_is_being_written(
    tmp_path,
):
    """A producer process publishing while the consumer drains: every message arrives once and
    whole, and nothing is left behind in the queue folder."""
    import subprocess

    from kombu import Connection, Queue

    from amperio import broker

    folders = {name: tmp_path / name for name in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir()
    options = {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),
        "polling_interval": 0.01,
    }
    producer_code = (
        "import json, sys; from kombu import Connection, Queue; import amperio.broker;"
        "q = Queue('amperio.site.T', routing_key='amperio.site.T');"
        f"c = Connection('{broker.SCHEME}://', transport_options=json.loads(sys.argv[1]));"
        "p = c.Producer(); [p.publish({'n': i, 'pad': 'x' * 4000}, exchange=q.exchange,"
        " routing_key=q.routing_key, declare=[q]) for i in range(300)]"
    )
    producer = subprocess.Popen([sys.executable, "-c", producer_code, json.dumps(options)])
    received = []
    try:
        with Connection(f"{broker.SCHEME}://", transport_options=options) as conn:
            queue = Queue("amperio.site.T", routing_key="amperio.site.T")
            with conn.SimpleQueue(queue) as simple:
                while len(received) < 300:
                    message = simple.get(timeout=30)
                    received.append(message.payload["n"])
                    message.ack()
    finally:
        producer.wait(timeout=30)
    assert sorted(received) == list(range(300))
    assert not list(folders["queue"].iterdir())

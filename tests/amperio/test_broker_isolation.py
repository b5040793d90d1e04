"""On a shared RabbitMQ, a site's credentials reach only its own queues: the user and permissions
`python -m amperio broker-user` makes, checked on a real broker in a vhost made for the test."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass, replace

import pytest
from amqp.exceptions import AccessRefused
from kombu import Connection, Consumer, Producer

from amperio import broker_users
from amperio.__main__ import main, watchdog_worker_command, worker_command
from amperio.celery import make_app, site_queue
from amperio.procs import Proc, wait_until
from amperio.settings import load

BROKER = "127.0.0.1:5672"
ADMIN_URL = f"amqp://guest:guest@{BROKER}//"


@dataclass(frozen=True)
class Broker:
    """A vhost of its own with the users of two sites and of the backend."""

    vhost: str
    site_a: str
    site_b: str
    urls: dict[str, str]  # site id or "backend" -> AMQP URL with that user's credentials


def rabbitmqctl(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - rabbitmqctl with our own arguments
        [broker_users.RABBITMQCTL, *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def needs_rabbitmq() -> None:
    """Fail (never skip) with one line when the broker is not there."""
    if not shutil.which(broker_users.RABBITMQCTL):
        pytest.fail("RabbitMQ needed: rabbitmqctl not found (install rabbitmq-server)", False)
    try:
        with Connection(ADMIN_URL, connect_timeout=5) as conn:
            conn.connect()
    except Exception as exc:  # noqa: BLE001 - any reason is the same one line
        pytest.fail(f"RabbitMQ needed at {BROKER} (guest/guest): {exc!r}", False)


@pytest.fixture(scope="module")
def broker():
    needs_rabbitmq()
    vhost = f"amperio-test-{secrets.token_hex(4)}"
    # Users are global to the broker: random site ids keep parallel runs apart.
    site_a, site_b = (f"{x}{secrets.token_hex(3).upper()}" for x in "AB")
    users = [broker_users.site_user(site_a), broker_users.site_user(site_b)]
    backend = replace(broker_users.backend_user(), name=f"amperio-backend-{vhost}")
    added = rabbitmqctl("add_vhost", vhost)
    if added.returncode != 0:
        pytest.fail(f"rabbitmqctl add_vhost failed: {added.stderr.strip()}", False)
    try:
        for user in [*users, backend]:
            broker_users.apply(user, vhost)
        urls = {
            site: f"amqp://{user.name}:{user.password}@{BROKER}/{vhost}"
            for site, user in zip([site_a, site_b, "backend"], [*users, backend], strict=True)
        }
        yield Broker(vhost, site_a, site_b, urls)
    finally:
        for user in [*users, backend]:
            broker_users.delete(user.name)
        rabbitmqctl("delete_vhost", vhost)


def connect(url: str) -> Connection:
    # Confirmed publishing: a refused publish raises here instead of closing the channel later.
    return Connection(url, transport_options={"confirm_publish": True}, connect_timeout=5)


def publish(url: str, exchange: str, routing_key: str, body: object = "hello") -> None:
    with connect(url) as conn:
        Producer(conn.channel()).publish(body, exchange=exchange, routing_key=routing_key)


def declare(url: str, queue: str) -> None:
    with connect(url) as conn:
        site_queue(queue)(conn.channel()).declare()


def take(url: str, queue: str) -> object:
    """One message from the queue, consumed (basic.consume) as a worker does."""
    got: list[object] = []
    with connect(url) as conn:
        channel = conn.channel()
        with Consumer(channel, [site_queue(queue)], auto_declare=False, accept=["json"]) as c:
            c.register_callback(lambda body, message: (got.append(body), message.ack()))
            wait_until(
                lambda: conn.drain_events(timeout=1) or got, 10, what=f"a message on {queue}"
            )
    return got[0]


def queue_of(site: str) -> str:
    return f"amperio.site.{site}"


@pytest.mark.integration
def test_a_site_user_declares_publishes_to_and_consumes_its_own_queues(broker):
    url = broker.urls[broker.site_a]
    for queue in (queue_of(broker.site_a), queue_of(broker.site_a) + ".watchdog"):
        declare(url, queue)
        publish(url, queue, queue, {"to": queue})
        assert take(url, queue) == {"to": queue}


@pytest.mark.integration
def test_a_site_user_is_refused_another_sites_queue_for_consuming_and_publishing(broker):
    a, b = broker.urls[broker.site_a], broker.urls[broker.site_b]
    other = queue_of(broker.site_b)
    for queue in (other, other + ".watchdog"):
        declare(b, queue)
        with pytest.raises(AccessRefused):
            take(a, queue)
        with pytest.raises(AccessRefused):
            publish(a, queue, queue)
        with pytest.raises(AccessRefused):
            declare(a, queue)
    # Nor through the default exchange, which routes to any queue by its name.
    with pytest.raises(AccessRefused):
        publish(a, "", other)


@pytest.mark.integration
def test_the_backend_user_queues_commands_for_every_site_but_not_their_watchdogs(broker):
    settings = replace(load(), broker_url=broker.urls["backend"])
    app = make_app(settings)
    app.conf.broker_transport_options = {"confirm_publish": True}
    try:
        for site in (broker.site_a, broker.site_b):
            # As the API queues a command: the queue is declared if the gateway never connected.
            app.send_task("amperio.tasks.apply_command", args=[site], queue=queue_of(site))
        # Each site finds its own command, with its own credentials.
        for site in (broker.site_a, broker.site_b):
            take(broker.urls[site], queue_of(site))
    finally:
        app.close()
    dog = queue_of(broker.site_a) + ".watchdog"
    with pytest.raises(AccessRefused):
        publish(broker.urls["backend"], dog, dog)
    with pytest.raises(AccessRefused):
        publish(broker.urls["backend"], "", dog)


@pytest.mark.integration
def test_a_gateway_sends_outcomes_to_the_backend_queue_but_cannot_read_or_declare_it(broker):
    backend_url, site_url = broker.urls["backend"], broker.urls[broker.site_a]
    declare(backend_url, "amperio.backend")  # as the backend worker does on its start
    # As the gateway's outcome relay publishes: its own app, its own user, nothing declared.
    settings = replace(load(), site_id=broker.site_a, broker_url=site_url)
    app = make_app(settings)
    try:
        app.send_task(
            "amperio.backend.record_outcome",
            args=[broker.site_a, {"command_id": "c-1", "status": "applied"}],
            queue="amperio.backend",
            declare=[],
        )
    finally:
        app.close()
    with connect(backend_url) as conn:
        message = conn.SimpleQueue(site_queue("amperio.backend")).get(timeout=10)
        message.ack()
    assert message.headers["task"] == "amperio.backend.record_outcome"
    with pytest.raises(AccessRefused):
        take(site_url, "amperio.backend")
    with pytest.raises(AccessRefused):
        declare(site_url, "amperio.backend")


@pytest.mark.integration
def test_a_celery_worker_runs_and_consumes_its_queue_on_its_site_users_credentials(
    broker, tmp_path
):
    site = broker.site_a
    settings = replace(load(), site_id=site, broker_url=broker.urls[site])
    env = {
        "AMPERIO_SITE_ID": site,
        "AMPERIO_STATE_DIR": str(tmp_path / "state"),
        "CELERY_BROKER_URL": broker.urls[site],
        "AMPERIO_ENEXA_URL": "http://127.0.0.1:9",
    }
    commands = [worker_command(settings, "solo", None), watchdog_worker_command(settings)]
    # Both at once: starting a worker is most of this test's time.
    procs = [Proc(f"worker{i}", command, tmp_path, env) for i, command in enumerate(commands)]
    try:
        for proc, command in zip(procs, commands, strict=True):
            wait_until(lambda p=proc: " ready." in p.log() or not p.alive(), 60, what="ready")
            assert proc.alive(), proc.log()[-3000:]
            queue = command[command.index("-Q") + 1]
            # The backend queues commands; only the site itself (its beat) feeds its watchdog.
            sender = broker.urls[site if queue.endswith(".watchdog") else "backend"]
            app = make_app(replace(settings, broker_url=sender))
            # An unknown task: the worker takes it off its queue and says so, nothing else runs.
            name = f"amperio.tests.not_a_task_for_{queue}"
            app.send_task(name, queue=queue)
            app.close()
            wait_until(lambda p=proc, n=name: n in p.log(), 30, what=f"the worker taking {name}")
            assert "ACCESS_REFUSED" not in proc.log()
    finally:
        for proc in procs:
            proc.stop()


def test_broker_user_prints_a_users_steps_limited_to_its_sites_queues(capsys):
    assert main(["broker-user", "SITE001", "--vhost", "amperio"]) == 0
    out = capsys.readouterr().out
    own = r"^amperio\.site\.SITE001(\.watchdog)?$"
    write = r"^(amperio\.site\.SITE001(\.watchdog)?|amperio\.backend)$"
    assert f"rabbitmqctl set_permissions -p amperio site-SITE001 '{own}' '{write}' '{own}'" in out
    assert "| rabbitmqctl add_user site-SITE001\n" in out


def test_a_sites_permissions_match_its_queues_and_no_other_sites():
    user = broker_users.site_user("SITE001")
    mine = replace(load(), site_id="SITE001")
    for pattern in (user.configure, user.write, user.read):
        assert re.match(pattern, mine.site_queue) and re.match(pattern, mine.watchdog_queue)
        for other in ("amperio.site.SITE0011", "amperio.site.SITE002", "amq.default", ""):
            assert not re.match(pattern, other)
    # The backend's queue: publish only, never declare or read.
    assert re.match(user.write, "amperio.backend")
    assert not re.match(user.configure, "amperio.backend")
    assert not re.match(user.read, "amperio.backend")
    assert not re.match(user.write, "amperio.backendX")
    backend = broker_users.backend_user()
    assert re.match(backend.write, "amperio.site.SITE002")
    assert not re.match(backend.write, "amperio.site.SITE002.watchdog")
    for pattern in (backend.configure, backend.write, backend.read):
        assert re.match(pattern, "amperio.backend")


def test_broker_user_refuses_a_site_id_that_is_not_one(capsys):
    assert main(["broker-user", "SITE.*"]) == 2
    assert "not a site id" in capsys.readouterr().err

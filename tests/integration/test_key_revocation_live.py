"""Two Enexa server processes on one database, with Redis: a controller key revoked, rotated
out, or its controller suspended, through one of them is refused by the other on its very next
call, though both have just served that key from their cache of the key lookup
(enexa.provisioning.keycache); a key rotated with a grace period keeps working on both."""

import sqlite3
from datetime import UTC, datetime

import psycopg
import pytest
import requests

from amperio.procs import free_port
from demo.bare_enexa import BareEnexa
from demo.enexa import enexa_database, serve_enexa
from shared.fields import format_timestamp

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def reading(n: int) -> dict:
    return {
        "site_id": "SITE001",
        "timestamp": format_timestamp(datetime.now(UTC)),
        "message_id": f"revocation-{n}",
        "battery": {"soc_pct": 50, "power_kw": 0},
    }


@pytest.fixture
def servers(tmp_path, redis_url):
    """(first, URL of the second): one gunicorn worker each, so the process that served a key
    is the one asked again."""
    log_dir = tmp_path
    with enexa_database(log_dir) as database_url:
        env = {"REDIS_URL": redis_url}
        first = BareEnexa(
            database_url, log_dir, controllers=True, workers=1, threads=1, extra_env=env
        )
        port = free_port()
        second = serve_enexa(port, log_dir, first.env, workers=1, threads=1)
        try:
            yield first, f"http://127.0.0.1:{port}"
        finally:
            second.stop()
            first.stop()


def gateway(key: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    return session


def post_status(session: requests.Session, url: str, n: int) -> int:
    return session.post(f"{url}/v1/telemetry", json=reading(n), timeout=30).status_code


def served_by_both(first: BareEnexa, second_url: str, n: int):
    """(staff session, gateway session) once the seeded key has been served by both processes,
    so each holds it in its cache."""
    staff = requests.Session()
    staff.headers["Authorization"] = f"Bearer {first.token()}"
    key = gateway(first.api_keys["SITE001"])
    assert post_status(key, first.url, n) == 201
    assert post_status(key, second_url, n + 1) == 201
    return staff, key


def test_a_key_revoked_or_suspended_through_one_process_is_refused_at_once_by_another(servers):
    first, second_url = servers
    staff, key = served_by_both(first, second_url, 1)

    revoked = staff.post(f"{first.url}/v1/controllers/CTRL001/api-keys/revoke", timeout=30)
    assert revoked.json()["revoked"] == 1
    assert post_status(key, second_url, 3) == 401
    assert post_status(key, first.url, 4) == 401

    rotated = staff.post(
        f"{second_url}/v1/controllers/CTRL001/api-keys/rotate", json={"grace_s": 0}, timeout=30
    )
    fresh = gateway(rotated.json()["api_key"])
    assert post_status(fresh, first.url, 5) == 201
    assert post_status(fresh, second_url, 6) == 201
    suspended = staff.post(
        f"{second_url}/v1/controllers/CTRL001/state", json={"state": "suspended"}, timeout=30
    )
    assert suspended.ok, suspended.text
    assert post_status(fresh, first.url, 7) == 401
    assert post_status(fresh, second_url, 8) == 401


def write_behind_django(database_url: str, sql: str) -> None:
    """Run `sql` on the live database as psql would, not through Enexa."""
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            conn.execute(sql)
        return
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql)


def test_both_processes_serve_keys_from_their_cache_and_drop_it_on_a_rotation(servers):
    first, second_url = servers
    staff, old = served_by_both(first, second_url, 11)

    # Written behind Django's back (no generation bump): both processes go on serving the key
    # from what they cached, which shows the lookup is cached at all.
    write_behind_django(
        first.env["DATABASE_URL"],
        "UPDATE provisioning_apikey SET secret_hash = 'x' "
        "WHERE controller_id = (SELECT id FROM registry_controller WHERE code = 'CTRL001')",
    )
    assert post_status(old, first.url, 13) == 201
    assert post_status(old, second_url, 14) == 201

    # A rotation with grace through one process: both read the keys again (the old one now
    # fails its secret check), and the new key works on both at once.
    rotated = staff.post(
        f"{first.url}/v1/controllers/CTRL001/api-keys/rotate", json={"grace_s": 3600}, timeout=30
    )
    assert rotated.ok, rotated.text
    assert post_status(old, second_url, 15) == 401
    fresh = gateway(rotated.json()["api_key"])
    assert post_status(fresh, second_url, 16) == 201
    assert post_status(fresh, first.url, 17) == 201

    # Rotating again with a grace keeps the previous key working on both; without one, it is
    # refused by both at once.
    again = staff.post(
        f"{second_url}/v1/controllers/CTRL001/api-keys/rotate", json={"grace_s": 3600}, timeout=30
    )
    assert post_status(fresh, first.url, 18) == 201
    assert post_status(fresh, second_url, 19) == 201
    newest = gateway(again.json()["api_key"])
    assert post_status(newest, first.url, 20) == 201
    final = staff.post(
        f"{first.url}/v1/controllers/CTRL001/api-keys/rotate", json={"grace_s": 0}, timeout=30
    )
    assert final.ok, final.text
    assert post_status(fresh, second_url, 21) == 401
    assert post_status(newest, second_url, 22) == 401
    assert post_status(newest, first.url, 23) == 401
    assert post_status(gateway(final.json()["api_key"]), second_url, 24) == 201

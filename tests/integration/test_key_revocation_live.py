"""Two Enexa server processes on one database: a controller key revoked, or its controller
suspended, through one of them is refused by the other on its very next call, though both
have just served that key (whatever a process may keep about keys must not outlive a
revocation)."""

from datetime import UTC, datetime

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


def test_a_key_revoked_or_suspended_through_one_process_is_refused_at_once_by_another(servers):
    first, second_url = servers
    staff = requests.Session()
    staff.headers["Authorization"] = f"Bearer {first.token()}"
    key = gateway(first.api_keys["SITE001"])
    assert post_status(key, first.url, 1) == 201
    assert post_status(key, second_url, 2) == 201

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

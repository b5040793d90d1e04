"""Exactly once under concurrency: many clients posting the same readings at the same moment to
a real Enexa (gunicorn, several workers) store each reading once, with exact counts."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
import requests

from demo.bare_enexa import BareEnexa
from demo.enexa import enexa_database
from shared.fields import format_timestamp

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

T0 = datetime(2024, 1, 15, 10, 0, 0, tzinfo=UTC)
CLIENTS = 8


def reading(seconds: int, message_id: str | None) -> dict:
    body = {
        "site_id": "SITE001",
        "timestamp": format_timestamp(T0 + timedelta(seconds=seconds)),
        "battery": {"soc_pct": 50, "power_kw": -10, "units": [{"id": "BAT1", "soc_pct": 50}]},
        "grid": {"import_kw": 20, "export_kw": 0},
    }
    if message_id:
        body["message_id"] = message_id
    return body


@pytest.fixture(scope="module")
def enexa(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("enexa-concurrency")
    with enexa_database(log_dir) as database_url:
        server = BareEnexa(database_url, log_dir, workers=2, threads=4)
        try:
            yield server
        finally:
            server.stop()


def post_together(url: str, token: str, bodies: list[list]) -> list[dict]:
    """Each client posts its own list of bodies, all starting at the same instant."""
    barrier = threading.Barrier(len(bodies))
    results: list[list[dict]] = [[] for _ in bodies]

    def client(i: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        barrier.wait(timeout=30)
        for body in bodies[i]:
            response = session.post(f"{url}/v1/telemetry", json=body, timeout=60)
            assert response.status_code in (200, 201), response.text
            results[i].append(response.json())

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return [r for rs in results for r in rs]


def stored(enexa: BareEnexa, token: str, start: str, end: str) -> list[dict]:
    response = requests.get(
        f"{enexa.url}/v1/sites/SITE001/telemetry",
        params={"from": start, "to": end, "resolution": "raw"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["points"]


def test_the_same_single_readings_posted_by_many_clients_at_once_are_stored_once(enexa):
    token = enexa.token()
    # 20 readings with ids and 5 without (identified by their timestamp), each sent by 8 clients.
    mine = [reading(s, f"single-{s}") for s in range(20)] + [
        reading(s, None) for s in range(20, 25)
    ]
    results = post_together(enexa.url, token, [mine] * CLIENTS)
    assert sum(r["accepted"] for r in results) == 25
    assert sum(r["duplicate"] for r in results) == 25 * (CLIENTS - 1)
    assert sum(r["rejected"] for r in results) == 0
    points = stored(enexa, token, "2024-01-15T10:00:00Z", "2024-01-15T10:00:25Z")
    assert len(points) == 25
    assert all(p["battery"]["units"] == [{"id": "BAT1", "soc_pct": 50.0}] for p in points)


def test_overlapping_batches_posted_at_once_store_each_reading_once(enexa):
    token = enexa.token()
    base = 1000
    # Client i sends readings [i*50, i*50 + 200): every reading is in up to four batches.
    bodies = [
        [{"items": [reading(base + s, f"batch-{s}") for s in range(i * 50, i * 50 + 200)]}]
        for i in range(CLIENTS)
    ]
    results = post_together(enexa.url, token, bodies)
    distinct = (CLIENTS - 1) * 50 + 200
    assert sum(r["accepted"] for r in results) == distinct
    assert sum(r["duplicate"] for r in results) == CLIENTS * 200 - distinct
    points = stored(enexa, token, "2024-01-15T10:16:40Z", "2024-01-15T11:00:00Z")
    assert len(points) == distinct

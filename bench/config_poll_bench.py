"""The gateway's configuration poll: latency and database queries of `GET .../config/version`
and of a conditional `GET .../config` answered 304, through the whole Django stack (API-key
authentication included) on a throw-away test database.

Results: bench/results/config_poll.json. `python -m bench config_poll`."""

import json
import os
import statistics
import time
from pathlib import Path

from bench import throwaway_database

RESULTS = Path(__file__).parent / "results" / "config_poll.json"
REQUESTS = int(os.environ.get("BENCH_CONFIG_POLL_REQUESTS", "500"))


def _measure(client, path: str, headers: dict, expected: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    timings = []
    with CaptureQueriesContext(connection) as queries:
        for _ in range(REQUESTS):
            started = time.perf_counter()
            response = client.get(path, **headers)
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == expected, response.content
    timings.sort()
    return {
        "requests": REQUESTS,
        "mean_ms": round(statistics.mean(timings), 3),
        "p95_ms": round(timings[int(len(timings) * 0.95) - 1], 3),
        "queries_per_request": round(len(queries) / REQUESTS, 2),
    }


def main() -> None:
    with throwaway_database():
        from django.db import connection
        from rest_framework.test import APIClient

        from enexa.provisioning.services import issue_api_key
        from enexa.registry.models import Controller, Site

        site = Site.objects.create(code="SITE001", name="Bench", grid_connection_limit_kw=400)
        controller = Controller.objects.create(code="CTRL001", serial="BENCH-1", site=site)
        _, api_key = issue_api_key(controller)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
        results = {
            "database": connection.vendor,
            "version_poll": _measure(client, "/v1/controllers/CTRL001/config/version", {}, 200),
            "config_not_modified": _measure(
                client, "/v1/controllers/CTRL001/config", {"HTTP_IF_NONE_MATCH": '"1"'}, 304
            ),
            "config_full": _measure(client, "/v1/controllers/CTRL001/config", {}, 200),
        }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

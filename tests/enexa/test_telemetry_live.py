"""An outage seen from outside, against a real Enexa (gunicorn) and `manage.py detect_offline`
in its own process: the site goes offline after the silence, comes back with its backlog, and
the outage report counts what was expected, received and backfilled."""

from datetime import UTC, datetime, timedelta

import pytest
import requests

from amperio.procs import wait_until
from demo.bare_enexa import BareEnexa
from demo.enexa import enexa_database, run_manage
from shared.fields import format_timestamp

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SILENCE_S = 2


def reading(ts: datetime, message_id: str, backfilled: bool = False) -> dict:
    body = {
        "site_id": "SITE001",
        "timestamp": format_timestamp(ts),
        "message_id": message_id,
        "battery": {"soc_pct": 50, "power_kw": 0},
    }
    if backfilled:
        body["backfilled"] = True
    return body


def test_an_outage_is_detected_reported_and_reconciled_across_processes(tmp_path):
    with enexa_database(tmp_path) as database_url:
        enexa = BareEnexa(
            database_url,
            tmp_path,
            controllers=True,
            extra_env={"ENEXA_OFFLINE_AFTER_S": str(SILENCE_S), "ENEXA_TELEMETRY_INTERVAL_S": "1"},
        )
        try:
            gateway = requests.Session()
            gateway.headers["Authorization"] = f"Bearer {enexa.api_keys['SITE001']}"
            staff = requests.Session()
            staff.headers["Authorization"] = f"Bearer {enexa.token()}"

            def post(path, body):
                response = gateway.post(f"{enexa.url}{path}", json=body, timeout=30)
                assert response.status_code in (200, 201), response.text
                return response.json()

            def status():
                return staff.get(f"{enexa.url}/v1/sites/SITE001/status", timeout=10).json()

            # The site's configuration says a reading every 5 s (the configs default).
            t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=60)
            post("/v1/status", {"site_id": "SITE001", "online": True, "mode": "auto"})
            post(
                "/v1/telemetry",
                {"items": [reading(t0 + timedelta(seconds=s), f"live-{s}") for s in (0, 5, 10)]},
            )
            assert status()["online"] is True

            # The gateway goes quiet: read as offline once the silence has passed, before any
            # detection ran.
            wait_until(lambda: status()["online"] is False, SILENCE_S + 2, 0.2, what="offline")
            assert "SITE001" in run_manage("detect_offline", env=enexa.env)

            # Back: its status first, then the backlog it kept (one reading lost, at +35 s).
            post("/v1/status", {"site_id": "SITE001", "online": True, "mode": "auto"})
            assert status()["online"] is True
            kept = [s for s in range(15, 65, 5) if s != 35]
            backlog = [
                reading(t0 + timedelta(seconds=s), f"kept-{s}", backfilled=True) for s in kept
            ]
            assert post("/v1/telemetry", {"items": backlog})["accepted"] == len(kept)

            outages = staff.get(f"{enexa.url}/v1/sites/SITE001/outages", timeout=10).json()
            report = outages["outages"][0]
            online_at = datetime.fromisoformat(report["online_at"].replace("Z", "+00:00"))
            assert report["silent_since"] == format_timestamp(t0 + timedelta(seconds=10))
            ticks = [s for s in range(15, 600, 5) if t0 + timedelta(seconds=s) < online_at]
            assert report["readings_expected"] == len(ticks)
            assert report["readings_received"] == report["readings_backfilled"] == len(kept)
            assert report["readings_missing"] == len(ticks) - len(kept)
            assert report["gaps"][0] == {
                "from": format_timestamp(t0 + timedelta(seconds=35)),
                "to": format_timestamp(t0 + timedelta(seconds=35)),
                "missing": 1,
            }
            assert sum(g["missing"] for g in report["gaps"]) == len(ticks) - len(kept)
            assert report["backfilled_ranges"] == [
                {
                    "from": format_timestamp(t0 + timedelta(seconds=15)),
                    "to": format_timestamp(t0 + timedelta(seconds=30)),
                    "count": 4,
                },
                {
                    "from": format_timestamp(t0 + timedelta(seconds=40)),
                    "to": format_timestamp(t0 + timedelta(seconds=60)),
                    "count": 5,
                },
            ]
        finally:
            enexa.stop()

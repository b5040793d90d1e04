"""`python -m amperio provision` against a real HTTP peer standing in for Enexa and a simulator."""

import json
import stat
import subprocess
import sys

import pytest
import requests

from amperio.procs import REPO_DIR as REPO
from tests.httppeer import HttpPeer

SECRET = "enroll-secret-123"
API_KEY = "enx_lookup.secret-part"


def enexa(sim_port):
    def handler(method, path, headers, body):
        if path == "/v1/provisioning/register":
            if headers.get("authorization") != f"Bearer {SECRET}":
                return 401, {"detail": "bad enrollment secret"}
            return 201, {
                "controller_id": "CTRL001",
                "api_key": API_KEY,
                "config_url": "/v1/controllers/CTRL001/config",
            }
        if headers.get("authorization") != f"Bearer {API_KEY}":
            return 401, {"detail": "bad key"}
        if path == "/v1/provisioning/initial-config":
            return 200, {
                "config": {
                    "version": 4,
                    "settings": {"modbus": {"host": "127.0.0.1", "port": sim_port}},
                    "limits": {"grid": {"limit_kw": 400}},
                },
                "assets": ["BAT1", "BAT2", "CHG1"],
            }
        if path == "/v1/provisioning/activate":
            return 200, {"activated": bool(body.get("tests_passed"))}
        return 404, {"detail": "not found"}

    return HttpPeer(handler)


def provision(peer, state_dir, secret=SECRET):
    return subprocess.run(
        [sys.executable, "-m", "amperio", "provision", "--serial", "CP-SIM-0001",
         "--site", "SITE001", "--enrollment-secret", secret, "--enexa-url", peer.url],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "AMPERIO_STATE_DIR": str(state_dir), "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip


def test_provisioning_registers_configures_tests_activates_and_keeps_the_key_private(sim, tmp_path):
    with enexa(sim.port) as peer:
        result = provision(peer, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    key_file = tmp_path / "api_key"
    assert key_file.read_text().strip() == API_KEY
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    paths = [r["path"] for r in peer.requests]
    assert paths == [
        "/v1/provisioning/register",
        "/v1/provisioning/initial-config",
        "/v1/provisioning/activate",
    ]
    assert peer.requests[0]["body"] == {"serial": "CP-SIM-0001", "site_id": "SITE001"}
    assert peer.requests[2]["body"] == {"status": "ready", "tests_passed": True}
    assert json.loads((tmp_path / "config.json").read_text())["version"] == 4
    assert API_KEY not in result.stdout + result.stderr  # never printed


def test_a_chargepost_on_another_interface_version_fails_the_self_test(sim, tmp_path):
    sim.state.interface_version = "2.4"
    with enexa(sim.port) as peer:
        result = provision(peer, tmp_path)
    assert result.returncode == 1
    activate = peer.requests[-1]
    assert activate["path"] == "/v1/provisioning/activate"
    assert activate["body"]["tests_passed"] is False
    assert "2.4" in activate["body"]["detail"]


def test_a_wrong_enrollment_secret_stores_no_key(sim, tmp_path):
    with enexa(sim.port) as peer:
        result = provision(peer, tmp_path, secret="wrong")
    assert result.returncode == 2
    assert "401" in result.stderr
    assert not (tmp_path / "api_key").exists()


@pytest.mark.integration
def test_provisioning_against_a_live_enexa_activates_a_new_controller(sim, tmp_path):
    from demo.enexa import LiveEnexa, enexa_database

    with enexa_database(tmp_path) as database_url:
        enexa = LiveEnexa(database_url, tmp_path)
        try:
            staff = {"Authorization": f"Bearer {enexa.staff_token()}"}
            # Staff name the ChargePost's address in the site configuration.
            site_config = requests.get(f"{enexa.url}/v1/config/SITE001", headers=staff, timeout=10)
            patched = requests.patch(
                f"{enexa.url}/v1/config/SITE001",
                json={"modbus": {"host": "127.0.0.1", "port": sim.port, "device_id": 1}},
                headers={**staff, "If-Match": site_config.headers["ETag"]},
                timeout=10,
            )
            assert patched.status_code == 200, patched.text
            issued = requests.post(
                f"{enexa.url}/v1/sites/SITE001/enrollment-tokens", headers=staff, timeout=10
            )
            assert issued.status_code == 201, issued.text
            result = subprocess.run(
                [sys.executable, "-m", "amperio", "provision", "--serial", "CP-NEW-0042",
                 "--site", "SITE001", "--enrollment-secret", issued.json()["secret"],
                 "--enexa-url", enexa.url],
                cwd=REPO,
                env={"PYTHONPATH": str(REPO), "AMPERIO_STATE_DIR": str(tmp_path / "gw"),
                     "PATH": "/usr/bin"},
                capture_output=True,
                text=True,
                timeout=120,
            )  # fmt: skip
            assert result.returncode == 0, result.stdout + result.stderr
            key = (tmp_path / "gw" / "api_key").read_text().strip()
            assert stat.S_IMODE((tmp_path / "gw" / "api_key").stat().st_mode) == 0o600
            summary = json.loads(result.stdout.splitlines()[-1])
            assert summary["activated"] is True
            controller = requests.get(
                f"{enexa.url}/v1/controllers/{summary['controller_id']}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=10,
            )
            assert controller.status_code == 200, controller.text
            assert controller.json()["site_id"] == "SITE001"
        finally:
            enexa.stop()

"""Firmware updates against a real HTTP peer standing in for Enexa."""

import hashlib
import json

from amperio.enexa_link.client import EnexaClient
from amperio.enexa_link.firmware import check_and_update, is_newer
from amperio.state import GatewayState
from tests.httppeer import HttpPeer

IMAGE = {"image": "chargepost-gateway 2.1.0"}
IMAGE_BYTES = json.dumps(IMAGE).encode()  # exactly what the peer serves


def enexa(latest):
    def handler(method, path, headers, body):
        if path.startswith("/v1/firmware/latest"):
            return (200, latest) if latest else (404, {"detail": "none"})
        if path == "/files/gateway-2.1.0.bin":
            return 200, IMAGE
        if method == "POST" and path == "/v1/controllers/CTRL001/firmware":
            return 201, body
        return 404, {"detail": "not found"}

    return HttpPeer(handler)


def reports(peer):
    return [r["body"] for r in peer.requests if r["method"] == "POST"]


def test_a_newer_release_is_downloaded_verified_installed_and_reported_running(tmp_path):
    state = GatewayState(tmp_path / "state.sqlite3")
    latest = {
        "version": "2.1.0",
        "url": "/files/gateway-2.1.0.bin",
        "sha256": hashlib.sha256(IMAGE_BYTES).hexdigest(),
    }
    with enexa(latest) as peer:
        client = EnexaClient(peer.url, api_key="key", max_retries=0)
        result = check_and_update(client, "CTRL001", "2.0.5", state)
    assert result.outcome == "updated"
    assert state.get("firmware_version") == "2.1.0"
    assert [(r["status"], r["current_version"]) for r in reports(peer)] == [
        ("downloading", "2.0.5"),
        ("installing", "2.0.5"),
        ("ok", "2.1.0"),  # success only with the new version running after the reboot
    ]
    assert all(r["headers"]["authorization"] == "Bearer key" for r in peer.requests)


def test_a_download_with_the_wrong_sha256_is_refused_and_reported_failed(tmp_path):
    state = GatewayState(tmp_path / "state.sqlite3")
    state.set("firmware_version", "2.0.5")
    latest = {"version": "2.1.0", "url": "/files/gateway-2.1.0.bin", "sha256": "0" * 64}
    with enexa(latest) as peer:
        client = EnexaClient(peer.url, api_key="key", max_retries=0)
        result = check_and_update(client, "CTRL001", "2.0.5", state)
    assert result.outcome == "failed"
    assert state.get("firmware_version") == "2.0.5"  # nothing installed
    sent = reports(peer)
    assert [r["status"] for r in sent] == ["downloading", "failed"]
    assert "sha256 mismatch" in sent[-1]["error"]
    assert sent[-1]["current_version"] == "2.0.5"


def test_a_release_that_is_not_newer_is_not_downloaded(tmp_path):
    state = GatewayState(tmp_path / "state.sqlite3")
    latest = {"version": "2.9.0", "url": "/files/gateway-2.1.0.bin", "sha256": "0" * 64}
    with enexa(latest) as peer:
        client = EnexaClient(peer.url, api_key="key", max_retries=0)
        result = check_and_update(client, "CTRL001", "2.10.0", state)
    assert result.outcome == "up_to_date"
    assert reports(peer) == []
    assert not any(r["path"].startswith("/files/") for r in peer.requests)


def test_versions_compare_semantically():
    assert is_newer("2.10.0", "2.9.0")
    assert is_newer("2.1.0", "2.1.0-beta.2")
    assert is_newer("2.1.0-beta.10", "2.1.0-beta.9")
    assert not is_newer("2.0.5", "2.0.5")
    assert not is_newer("garbage", "1.0.0")

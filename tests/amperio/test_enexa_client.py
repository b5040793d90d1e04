"""The Enexa client against a real local HTTP server: retries, Retry-After, auth, 304, batches."""

import socket

import pytest

from amperio.enexa_link.client import (
    EnexaAuthError,
    EnexaClient,
    EnexaError,
    EnexaRejected,
    EnexaUnavailable,
)
from tests.httppeer import HttpPeer

READING = {
    "site_id": "SITE001",
    "timestamp": "2024-01-15T10:00:01Z",
    "message_id": "m-1",
    "battery": {"soc_pct": 65, "power_kw": -25.0},
    "grid": {"import_kw": 35, "export_kw": 0},
}


def client_for(peer, sleeps=None, **kwargs):
    slept = sleeps if sleeps is not None else []
    return EnexaClient(peer.url, api_key="enx_key.secret", sleep=slept.append, **kwargs)


def scripted(*answers):
    """A handler answering each request with the next scripted answer (the last one repeats)."""
    queue = list(answers)

    def handler(method, path, headers, body):
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return handler


def test_a_5xx_is_retried_with_backoff_until_enexa_answers():
    with HttpPeer(scripted((502, None), (500, None), (200, {"version": 5}))) as peer:
        sleeps = []
        assert client_for(peer, sleeps).config_version("CTRL001") == {"version": 5}
    assert len(peer.requests) == 3
    assert len(sleeps) == 2 and all(s > 0 for s in sleeps)
    assert peer.requests[0]["headers"]["authorization"] == "Bearer enx_key.secret"


def test_retry_after_is_honoured_on_429_and_503():
    answers = ((429, None, {"Retry-After": "7"}), (503, None, {"Retry-After": "3"}), (200, {}))
    with HttpPeer(scripted(*answers)) as peer:
        sleeps = []
        client_for(peer, sleeps).config_version("CTRL001")
    assert sleeps == [7.0, 3.0]


def test_a_retry_after_beyond_the_cap_gives_up_at_once_and_says_when_to_come_back():
    with HttpPeer(scripted((503, None, {"Retry-After": "600"}))) as peer:
        sleeps = []
        with pytest.raises(EnexaUnavailable) as caught:
            client_for(peer, sleeps, max_retry_after_s=30).config_version("CTRL001")
    assert caught.value.retry_after == 600
    assert sleeps == [] and len(peer.requests) == 1


def test_enexa_still_down_after_the_retries_is_reported_as_unavailable():
    with HttpPeer(scripted((503, None))) as peer:
        with pytest.raises(EnexaUnavailable):
            client_for(peer, max_retries=2).config_version("CTRL001")
    assert len(peer.requests) == 3


def test_a_refused_connection_is_retried_then_reported_as_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps = []
    client = EnexaClient(f"http://127.0.0.1:{port}", sleep=sleeps.append, max_retries=2)
    with pytest.raises(EnexaUnavailable):
        client.config_version("CTRL001")
    assert len(sleeps) == 2


def test_a_revoked_key_is_not_retried():
    with HttpPeer(scripted((401, {"detail": "Key revoked."}))) as peer:
        with pytest.raises(EnexaAuthError) as caught:
            client_for(peer).config_version("CTRL001")
    assert caught.value.status == 401
    assert len(peer.requests) == 1


def test_a_4xx_carries_the_problem_details_errors():
    problem = {"title": "Invalid input.", "status": 400, "errors": {"serial": ["Required."]}}
    with HttpPeer(scripted((400, problem))) as peer:
        with pytest.raises(EnexaRejected) as caught:
            client_for(peer).register("", "SITE001", "secret")
    assert caught.value.errors == {"serial": ["Required."]}
    assert len(peer.requests) == 1


def test_the_config_is_fetched_with_its_etag_and_304_means_unchanged():
    config = {"version": 5, "settings": {}, "limits": {}}

    def handler(method, path, headers, body):
        if headers.get("if-none-match") == '"5"':
            return 304, None, {"ETag": '"5"'}
        return 200, config, {"ETag": '"5"'}

    with HttpPeer(handler) as peer:
        client = client_for(peer)
        assert client.config("CTRL001") == (config, '"5"')
        assert client.config("CTRL001", etag='"5"') == (None, '"5"')
    assert peer.requests[1]["path"] == "/v1/controllers/CTRL001/config"


def test_registration_uses_the_enrollment_secret_and_keeps_the_new_key():
    answer = {"controller_id": "CTRL001", "api_key": "enx_new.key", "config_url": "/x"}
    with HttpPeer(scripted((201, answer), (200, {"config": {}, "assets": []}))) as peer:
        client = EnexaClient(peer.url)
        assert client.register("SN1", "SITE001", "enroll-secret")["controller_id"] == "CTRL001"
        client.initial_config()
    assert peer.requests[0]["headers"]["authorization"] == "Bearer enroll-secret"
    assert peer.requests[0]["body"] == {"serial": "SN1", "site_id": "SITE001"}
    assert peer.requests[1]["headers"]["authorization"] == "Bearer enx_new.key"


def test_telemetry_goes_as_one_batch_and_a_locally_invalid_reading_is_reported_rejected():
    bad = {**READING, "message_id": "m-bad", "battery": {"soc_pct": 140}}
    answer = {
        "accepted": 1,
        "duplicate": 1,
        "rejected": 0,
        "errors": [],
    }
    with HttpPeer(scripted((200, answer))) as peer:
        second = {**READING, "message_id": "m-2"}
        result = client_for(peer).post_telemetry([READING, bad, second])
    assert [item["message_id"] for item in peer.requests[0]["body"]["items"]] == ["m-1", "m-2"]
    assert result["rejected"] == 1
    assert result["errors"][0]["index"] == 1
    assert "battery.soc_pct" in result["errors"][0]["errors"]


def test_enexa_item_errors_point_at_the_callers_indexes():
    bad = {**READING, "message_id": "m-bad", "battery": {"soc_pct": 140}}
    answer = {
        "accepted": 0,
        "duplicate": 0,
        "rejected": 1,
        "errors": [{"index": 0, "message_id": "m-2", "errors": {"site_id": ["Not yours."]}}],
    }
    with HttpPeer(scripted((400, answer))) as peer:
        result = client_for(peer).post_telemetry([bad, {**READING, "message_id": "m-2"}])
    assert result["rejected"] == 2
    assert [e["index"] for e in result["errors"]] == [0, 1]


def test_a_status_report_is_checked_against_the_shared_schema_before_sending():
    with HttpPeer(scripted((200, {}))) as peer:
        client = client_for(peer)
        client.post_status({"site_id": "SITE001", "online": True, "config_version": 5})
        with pytest.raises(ValueError):
            client.post_status({"site_id": "SITE001", "online": "yes"})
    assert len(peer.requests) == 1


def test_firmware_latest_is_none_when_nothing_targets_the_controller_and_downloads_are_capped():
    def handler(method, path, headers, body):
        if path.startswith("/v1/firmware/latest"):
            return 404, {"detail": "No release."}
        return 200, {"blob": "x" * 1000}

    with HttpPeer(handler) as peer:
        client = client_for(peer)
        assert client.firmware_latest("CTRL001") is None
        assert len(client.download("/files/fw.bin")) > 1000
        with pytest.raises(EnexaError):
            client.download(f"{peer.url}/files/fw.bin", max_bytes=100)

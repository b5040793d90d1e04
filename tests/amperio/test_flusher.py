"""The flusher empties the outbox into Enexa exactly once, live first, at a bounded rate."""

import random
import threading

import pytest
import requests

from amperio.telemetry.flusher import LOST_SINCE, Flusher, SendResult, result_from_response
from amperio.telemetry.outbox import Outbox
from shared.events import Event
from tests.amperio.kill9 import kill_at_random_moment
from tests.amperio.wall import Wall
from tests.httppeer import HttpPeer


class Clock:
    """A fake monotonic clock whose sleep advances it: rate and jitter without wall time."""

    def __init__(self):
        self.t = 1000.0
        self.slept = []

    def __call__(self):
        return self.t

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.t += seconds


def reading(i):
    return {
        "site_id": "SITE001",
        "timestamp": "2026-01-15T10:00:00Z",
        "message_id": f"m{i}",
        "grid": {"import_kw": 10.0},
    }


class Recorder:
    """An in-process Enexa: stores by message_id, answers like the ingest endpoint."""

    def __init__(self, bad=()):
        self.batches = []
        self.stored = {}
        self.duplicates = 0
        self.down = False
        self.bad = set(bad)

    def __call__(self, payloads):
        if self.down:
            raise ConnectionError("Connection refused")
        self.batches.append(payloads)
        return ingest(self, payloads)


def ingest(store, payloads):
    answer = {"accepted": 0, "duplicate": 0, "rejected": 0, "errors": []}
    for index, payload in enumerate(payloads):
        key = payload.get("message_id") or payload.get("event_id")
        if key in store.bad:
            answer["rejected"] += 1
            answer["errors"].append(
                {"index": index, "message_id": key, "errors": {"grid.import_kw": ["Bad."]}}
            )
        elif key in store.stored:
            answer["duplicate"] += 1
            store.duplicates += 1
        else:
            answer["accepted"] += 1
            store.stored[key] = payload
    return answer


def make(tmp_path, readings=None, events=None, **kwargs):
    wall, clock = Wall(), Clock()
    box = Outbox(tmp_path / "outbox.sqlite3", clock=wall, **kwargs.pop("box", {}))
    flusher = Flusher(
        box,
        readings or Recorder(),
        events or Recorder(),
        rng=random.Random(kwargs.pop("seed", 1)),
        clock=clock,
        sleep=clock.sleep,
        **kwargs,
    )
    return box, flusher, wall, clock


def test_enexas_answer_maps_to_acks_and_rejections_by_position():
    payloads = [reading(i) for i in range(4)]
    answer = {
        "accepted": 2,
        "duplicate": 1,
        "rejected": 1,
        "errors": [{"index": 2, "message_id": "m2", "errors": {"timestamp": ["Too far."]}}],
    }
    result = result_from_response(payloads, answer)
    assert result.accepted_keys == [0, 1, 3]
    assert result.rejected == {2: {"timestamp": ["Too far."]}}
    assert result.duplicate_count == 1
    assert result.transient_error is None


def test_after_a_restore_live_readings_go_at_once_and_the_backlog_after_the_random_delay(
    tmp_path,
):
    send = Recorder()
    box, flusher, wall, clock = make(tmp_path, readings=send, jitter_s=(2.0, 8.0))
    box.add_reading(reading(0))
    send.down = True
    assert flusher.run_once()["transient"] == 1
    for i in range(1, 6):  # buffered while Enexa is away
        wall.advance(1)
        box.add_reading(reading(i))
    send.down = False
    wall.advance(1)
    flusher.on_connection_restored()
    delay = flusher.delay_s
    assert 2.0 <= delay <= 8.0
    box.add_reading(reading(6))  # read after the restore

    stats = flusher.run_once()
    assert [p["message_id"] for p in send.batches[-1]] == ["m6"]
    assert stats["acked"] == 1
    assert "backfilled" not in send.stored["m6"]

    clock.t += delay / 2
    flusher.run_once()
    assert len(send.stored) == 1, "the backlog waits for the randomised delay"

    clock.t += delay / 2
    flusher.run_once()
    assert [p["message_id"] for p in send.batches[-1]] == [f"m{i}" for i in range(6)]
    assert all(send.stored[f"m{i}"]["backfilled"] is True for i in range(6))
    assert box.depth()["readings"] == 0
    assert flusher.live_since is None, "the outage is caught up"


def test_an_outage_recorded_before_an_upgrade_is_still_known_after_it(tmp_path):
    """Earlier versions stored the outage's start with a "+00:00" offset, not "Z"."""
    send = Recorder()
    box, flusher, wall, clock = make(tmp_path, readings=send)
    box.set_meta(LOST_SINCE, "2026-01-15T09:58:00+00:00")
    box.add_reading(reading(0))
    flusher.run_once()
    assert send.stored["m0"]["backfilled"] is True, "sent as part of the outage's backlog"
    assert flusher.live_since == wall()


def test_the_randomised_delay_spreads_gateways_over_the_whole_range(tmp_path):
    delays = []
    for seed in range(50):
        box, flusher, wall, clock = make(tmp_path / str(seed), seed=seed, jitter_s=(1.0, 10.0))
        flusher.on_connection_lost()
        flusher.on_connection_restored()
        delays.append(flusher.delay_s)
    assert all(1.0 <= d <= 10.0 for d in delays)
    assert min(delays) < 3 and max(delays) > 8, "spread, not bunched"


def test_the_backlog_leaves_at_no_more_than_the_rate_bound(tmp_path):
    send = Recorder()
    times = []

    def timed(payloads):
        times.append((clock(), len(payloads)))
        return send(payloads)

    box, flusher, wall, clock = make(
        tmp_path, readings=timed, batch_size=200, max_rate_per_s=1000, max_batches_per_run=100
    )
    box.add_readings([reading(i) for i in range(5000)])
    flusher.run_once()
    assert len(send.stored) == 5000
    start = times[0][0]
    sent = 0
    for at, count in times:
        # Within any stretch from the first send, at most rate x elapsed plus one batch.
        assert sent <= 1000 * (at - start) + 200
        sent += count
    elapsed = times[-1][0] - start
    print(f"5000 readings in batches of 200 at 1000/s: {elapsed:.1f} s of (fake) clock")
    assert elapsed >= (5000 - 200) / 1000


def test_one_run_sends_a_bounded_number_of_batches(tmp_path):
    send = Recorder()
    box, flusher, wall, clock = make(tmp_path, readings=send, batch_size=10, max_batches_per_run=3)
    box.add_readings([reading(i) for i in range(100)])
    stats = flusher.run_once()
    assert len(send.batches) == 3
    assert (stats["sent"], stats["acked"]) == (30, 30)
    assert box.depth()["readings"] == 70


def test_a_reading_enexa_keeps_refusing_is_dead_lettered_and_the_rest_flow(tmp_path):
    send = Recorder(bad={"m1"})
    box, flusher, wall, clock = make(tmp_path, readings=send, box={"max_attempts": 3})
    box.add_readings([reading(i) for i in range(3)])
    totals = {"rejected": 0, "dead_lettered": 0}
    for _ in range(5):
        box.add_reading(reading(100 + _))
        stats = flusher.run_once()
        totals = {k: totals[k] + stats[k] for k in totals}
    assert set(send.stored) == {"m0", "m2"} | {f"m{100 + i}" for i in range(5)}
    assert totals == {"rejected": 3, "dead_lettered": 1}
    assert box.depth()["readings"] == 0
    assert box.dead_letters()[0]["payload"]["message_id"] == "m1"


def test_what_the_outbox_thinned_is_reported_to_enexa_as_a_buffer_event(tmp_path):
    readings, events = Recorder(), Recorder()
    readings.down = events.down = True
    box, flusher, wall, clock = make(
        tmp_path, readings=readings, events=events, box={"max_readings": 50}
    )
    box.add_readings([reading(i) for i in range(80)])
    flusher.run_once()  # Enexa away: the report is queued as an event, not lost
    assert box.depth()["events"] == 1
    readings.down = events.down = False
    flusher.on_connection_restored()
    clock.t += 10
    flusher.run_once()
    (event,) = events.stored.values()
    parsed = Event.from_dict(event)
    assert parsed.kind == "buffer"
    assert parsed.data["thinned"] == 80 - len(readings.stored)
    assert parsed.site_id == "SITE001"


def test_a_sender_answering_enexas_dict_directly_is_understood(tmp_path):
    store = Recorder(bad={"m1"})
    box, flusher, wall, clock = make(tmp_path, readings=lambda p: ingest(store, p))
    box.add_readings([reading(i) for i in range(3)])
    stats = flusher.run_once()
    assert (stats["acked"], stats["rejected"]) == (2, 1)
    assert isinstance(result_from_response([], {}), SendResult)


def test_an_outage_of_a_real_enexa_server_stores_every_reading_exactly_once(tmp_path):
    state = {"down": False, "stored": {}, "duplicates": 0}
    lock = threading.Lock()

    def handler(method, path, headers, body):
        if state["down"]:
            return 503, {"title": "Service unavailable"}
        with lock:
            store = type("S", (), {"bad": set()})()
            store.stored, store.duplicates = state["stored"], 0
            answer = ingest(store, body["items"])
            state["duplicates"] += store.duplicates
        return 200, answer

    with HttpPeer(handler) as peer:

        def post(path):
            def send(payloads):
                response = requests.post(peer.url + path, json={"items": payloads}, timeout=5)
                if response.status_code >= 500:
                    return SendResult(transient_error=f"HTTP {response.status_code}")
                return result_from_response(payloads, response.json())

            return send

        wall, clock = Wall(), Clock()
        box = Outbox(tmp_path / "outbox.sqlite3", clock=wall)
        flusher = Flusher(
            box,
            post("/v1/telemetry"),
            post("/v1/events"),
            batch_size=50,
            rng=random.Random(7),
            clock=clock,
            sleep=clock.sleep,
        )
        added = 0
        outage = set()
        for cycle in range(120):  # one reading per 5 s; Enexa down for cycles 20-79
            state["down"] = 20 <= cycle < 80
            box.add_reading(reading(cycle))
            if state["down"]:
                outage.add(f"m{cycle}")
            added += 1
            wall.advance(5)
            clock.t += 5
            flusher.run_once()
        while box.depth()["readings"]:
            clock.t += 5
            flusher.run_once()

    stored = state["stored"]
    print(
        f"outage: {added} readings sent, {len(stored)} stored, "
        f"{state['duplicates']} duplicates, {len(outage)} backfilled"
    )
    assert len(stored) == added
    assert state["duplicates"] == 0
    assert {m for m, p in stored.items() if p.get("backfilled")} >= outage


FLUSH_WORKER = """
import sys, random, requests
from amperio.telemetry.outbox import Outbox
from amperio.telemetry.flusher import LOST_SINCE, Flusher, SendResult, result_from_response
url, path, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
def send(payloads):
    response = requests.post(url, json={"items": payloads}, timeout=5)
    return result_from_response(payloads, response.json())
box = Outbox(path, lease_s=0)
flusher = Flusher(box, send, send, batch_size=20, max_rate_per_s=1e6, jitter_s=(0, 0))
i = 0
while True:
    box.add_readings([{"site_id": "SITE001", "timestamp": "2026-01-15T10:00:00Z",
                       "message_id": f"{prefix}-{j}"} for j in range(i, i + 5)])
    print(" ".join(f"{prefix}-{j}" for j in range(i, i + 5)), flush=True)
    i += 5
    flusher.run_once()
"""


@pytest.mark.integration
def test_a_worker_killed_during_flushes_loses_nothing_and_enexa_stores_each_reading_once(
    tmp_path,
):
    lock = threading.Lock()
    store = type("S", (), {"bad": set(), "stored": {}, "duplicates": 0})()

    def handler(method, path, headers, body):
        with lock:
            return 200, ingest(store, body["items"])

    path = tmp_path / "outbox.sqlite3"
    rng = random.Random(88)
    reported: set[str] = set()
    trials = 12
    with HttpPeer(handler) as peer:
        for trial in range(trials):
            args = [peer.url, str(path), f"t{trial}"]
            what = f"trial {trial}: the worker"
            lines = kill_at_random_moment(FLUSH_WORKER, args, rng, 0.4, what)
            reported |= {m for line in lines for m in line.split()}

        def send(payloads):
            response = requests.post(peer.url, json={"items": payloads}, timeout=5)
            return result_from_response(payloads, response.json())

        box = Outbox(path, lease_s=0)
        flusher = Flusher(box, send, send, max_rate_per_s=1e6, jitter_s=(0, 0))
        for _ in range(1000):
            if not box.depth()["readings"]:
                break
            flusher.run_once()

    stored = set(store.stored)
    print(
        f"{trials} kill -9 during flush: {len(reported)} readings added, {len(stored)} stored "
        f"once each, {len(reported - stored)} lost, {store.duplicates} resent and recognised"
    )
    assert reported <= stored
    assert box.depth()["readings"] == 0


def test_the_backlog_delay_range_comes_from_the_environment_and_a_wrong_one_is_refused(
    tmp_path, monkeypatch
):
    from amperio.gateway import Gateway
    from amperio.settings import load

    monkeypatch.setenv("AMPERIO_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("AMPERIO_BACKLOG_DELAY_S", raising=False)
    assert Gateway(load()).flusher().jitter_s == (1.0, 10.0)
    monkeypatch.setenv("AMPERIO_BACKLOG_DELAY_S", "0.5, 2")
    assert Gateway(load()).flusher().jitter_s == (0.5, 2.0)
    for wrong in ("2,1", "1", "1,2,3", "a,b", "-1,2"):
        monkeypatch.setenv("AMPERIO_BACKLOG_DELAY_S", wrong)
        with pytest.raises(ValueError, match="AMPERIO_BACKLOG_DELAY_S"):
            load()

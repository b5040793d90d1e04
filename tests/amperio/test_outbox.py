"""The outbox keeps every reading it reported as added, in order, bounded, until Enexa confirms."""

import os
import random
import sqlite3
import subprocess
import sys

import pytest

from amperio.procs import REPO_DIR
from amperio.telemetry.outbox import Outbox
from tests.amperio.kill9 import kill_at_random_moment
from tests.amperio.wall import Wall


def reading(i, site="SITE001"):
    return {
        "site_id": site,
        "timestamp": f"2026-01-15T10:00:{i % 60:02d}Z",
        "message_id": f"m{i}",
        "grid": {"import_kw": float(i)},
    }


def event(i):
    return {
        "site_id": "SITE001",
        "event_id": f"e{i}",
        "timestamp": "2026-01-15T10:00:00Z",
        "kind": "log",
        "message": f"line {i}",
    }


def ids(items):
    return [item.payload.get("message_id") or item.payload.get("event_id") for item in items]


WRITER = """
import sys
from amperio.telemetry.outbox import Outbox
box = Outbox(sys.argv[1])
start, batch = int(sys.argv[2]), int(sys.argv[3])
i = start
while True:
    if batch == 1:
        box.add_reading({"site_id": "SITE001", "timestamp": "2026-01-15T10:00:00Z",
                         "message_id": f"m{i}"})
    else:
        box.add_readings([{"site_id": "SITE001", "timestamp": "2026-01-15T10:00:00Z",
                           "message_id": f"m{j}"} for j in range(i, i + batch)])
    # Reported only after the commit returned: from here on the reading must survive.
    for j in range(i, i + batch):
        print(j, flush=True)
    i += batch
"""


@pytest.mark.integration
def test_every_reading_reported_as_added_survives_kill_9_at_random_moments(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    rng = random.Random(8)
    reported: set[str] = set()
    next_id = 0
    trials = 20
    for trial in range(trials):
        batch = rng.choice([1, 1, 7, 50])
        # Once the writer reported a reading, killed at a seeded moment.
        lines = kill_at_random_moment(
            WRITER, [str(path), str(next_id), str(batch)], rng, 0.3, f"trial {trial}: the writer"
        )
        reported |= {f"m{line.strip()}" for line in lines if line.strip()}
        next_id += 1_000_000

    box = Outbox(path)
    stored = set()
    while items := box.next_batch("reading", 5000):
        stored |= set(ids(items))
        box.ack(item.key for item in items)
    lost = reported - stored
    print(f"{trials} kill -9 trials: {len(reported)} readings reported added, {len(lost)} lost")
    assert not lost
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_every_connection_uses_wal_with_full_sync(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite3")
    conn = box._connect()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_live_readings_come_first_then_the_backlog_oldest_first(tmp_path):
    wall = Wall()
    box = Outbox(tmp_path / "outbox.sqlite3", clock=wall)
    for i in range(5):
        box.add_reading(reading(i))
        wall.advance(1)
    restored_at = wall.now
    for i in range(5, 8):
        box.add_reading(reading(i))
        wall.advance(1)

    first = box.next_batch("reading", 4, live_since=restored_at)
    assert ids(first) == ["m5", "m6", "m7", "m0"]
    assert ids(box.next_batch("reading", 10, live_since=restored_at)) == ["m1", "m2", "m3", "m4"]


def test_items_handed_out_are_not_handed_out_twice_until_released(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite3")
    box.add_readings([reading(i) for i in range(3)])
    batch = box.next_batch("reading", 2)
    assert ids(batch) == ["m0", "m1"]
    assert ids(box.next_batch("reading", 10)) == ["m2"]
    assert box.next_batch("reading", 10) == []
    box.release([batch[0].key])
    assert ids(box.next_batch("reading", 10)) == ["m0"]


def test_a_lease_that_runs_out_hands_the_items_out_again(tmp_path):
    wall = Wall()
    box = Outbox(tmp_path / "outbox.sqlite3", clock=wall, lease_s=30)
    box.add_reading(reading(1))
    assert ids(box.next_batch("reading", 10)) == ["m1"]
    wall.advance(31)  # the sender was killed before it acked
    assert ids(box.next_batch("reading", 10)) == ["m1"]


def test_acked_items_leave_and_the_rest_stay(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite3")
    box.add_readings([reading(i) for i in range(4)])
    box.add_event(event(1))
    items = box.next_batch("reading", 10)
    box.ack([items[0].key, items[2].key])
    box.release([items[1].key, items[3].key])
    assert ids(box.next_batch("reading", 10)) == ["m1", "m3"]
    assert ids(box.next_batch("event", 10)) == ["e1"]
    depth = box.depth()
    assert (depth["readings"], depth["events"], depth["dead_letter"]) == (2, 1, 0)
    assert depth["oldest_at"] is not None


def test_a_reading_refused_max_attempts_times_goes_to_dead_letter_and_stops_blocking(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite3", max_attempts=3)
    box.add_readings([reading(i) for i in range(3)])
    errors = {"grid.import_kw": ["Must be at least 0."]}
    for attempt in range(3):
        items = box.next_batch("reading", 10)
        assert ids(items)[0] == "m0"
        assert items[0].attempts == attempt
        dead = box.reject(items[0].key, errors)
        box.release(item.key for item in items[1:])
        assert dead is (attempt == 2)

    assert ids(box.next_batch("reading", 10)) == ["m1", "m2"]
    (letter,) = box.dead_letters()
    assert letter["payload"]["message_id"] == "m0"
    assert letter["errors"] == errors
    assert letter["attempts"] == 3
    assert box.depth()["dead_letter"] == 1


def test_over_the_bound_the_oldest_stretch_is_thinned_and_new_data_is_never_refused(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite3", max_readings=100)
    for i in range(300):
        box.add_reading(reading(i))
    box.add_event(event(1))

    kept = [int(m[1:]) for m in ids(box.next_batch("reading", 1000))]
    assert len(kept) <= 100
    assert kept[0] == 0, "the first reading of the outage is kept"
    assert kept[-20:] == list(range(280, 300)), "the newest readings are all kept"
    # Older data is coarser: gaps between kept readings never shrink going back in time.
    gaps = [b - a for a, b in zip(kept, kept[1:], strict=False)]
    assert gaps[0] > 1
    assert all(later <= earlier for earlier, later in zip(gaps, gaps[1:], strict=False))
    assert box.depth()["events"] == 1

    report = box.take_thinning_report()
    print(f"thinning: 300 added, {len(kept)} kept, report {report}")
    assert report["thinned"] == 300 - len(kept)
    assert report["dropped_expired"] == 0
    assert report["site_id"] == "SITE001"
    assert box.take_thinning_report() is None


def test_thinning_drops_every_other_intermediate_reading_of_the_oldest_stretch(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite3", max_readings=20)
    box.add_readings([reading(i) for i in range(20)])
    box.add_readings([reading(20)])  # one over: thin down to 18 (90 %), a stretch of 7
    kept = [int(m[1:]) for m in ids(box.next_batch("reading", 100))]
    assert kept == [0, 2, 4, 6, *range(7, 21)]


def test_events_are_never_thinned(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite3", max_readings=10)
    for i in range(50):
        box.add_event(event(i))
        box.add_reading(reading(i))
    assert ids(box.next_batch("event", 100)) == [f"e{i}" for i in range(50)]
    assert box.depth()["readings"] <= 10


def test_readings_older_than_the_age_bound_are_dropped_and_reported(tmp_path):
    wall = Wall()
    box = Outbox(tmp_path / "outbox.sqlite3", max_age_s=3600, clock=wall)
    box.add_readings([reading(i) for i in range(5)])
    box.add_event(event(1))
    wall.advance(3601)
    box.add_reading(reading(5))
    assert ids(box.next_batch("reading", 10)) == ["m5"]
    assert ids(box.next_batch("event", 10)) == ["e1"]
    report = box.take_thinning_report()
    assert (report["thinned"], report["dropped_expired"]) == (0, 5)


def test_two_processes_share_one_outbox(tmp_path):
    path = tmp_path / "outbox.sqlite3"
    code = (
        "from amperio.telemetry.outbox import Outbox;"
        f"Outbox({str(path)!r}).add_readings([{{'site_id': 'SITE001', 'message_id': 'x{{}}'"
        ".format(i), 'timestamp': '2026-01-15T10:00:00Z'} for i in range(3)])"
    )
    box = Outbox(path)
    box.add_reading(reading(1))
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPO_DIR)},
    )
    assert ids(box.next_batch("reading", 10)) == ["m1", "x0", "x1", "x2"]

"""Sending the outbox to Enexa: batches at a bounded rate, live data first after an outage.

After the connection comes back, the flusher waits a randomised delay before sending the
backlog, so a thousand gateways coming back together do not flatten Enexa; readings taken
since the restore go first, the backlog follows oldest first, marked `"backfilled": true`.
Items leave the outbox only once Enexa answered for them (stored or duplicate); refused items
are retried a few times and then dead-lettered; a transient failure leaves everything in place."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.events import new_event
from shared.fields import format_timestamp, parse_timestamp

from .outbox import Outbox, OutboxItem

log = logging.getLogger(__name__)

# Outage times live in the outbox's own table so every process (and a restarted worker) sees them.
LOST_SINCE = "flusher.lost_since"
LIVE_SINCE = "flusher.live_since"


@dataclass
class SendResult:
    """Enexa's answer to one batch, by position in the batch sent (or outbox key, see below)."""

    accepted_keys: list[int] = field(default_factory=list)
    duplicate_keys: list[int] = field(default_factory=list)
    rejected: dict[int, Any] = field(default_factory=dict)  # key -> field errors
    transient_error: str | None = None
    # Enexa answers duplicates as a count only, so their keys sit among accepted_keys.
    duplicate_count: int = 0


def result_from_response(items: Sequence[Any], response_json: dict[str, Any]) -> SendResult:
    """Map Enexa's ingest answer `{"accepted", "duplicate", "rejected", "errors": [{"index",
    ...}]}` to a SendResult. `index` is the position in the batch sent; the keys are those
    positions, or the items' outbox keys when `items` are OutboxItems. Every item not listed in
    `errors` was stored (or already was) and is acked."""
    keys = [item.key if isinstance(item, OutboxItem) else i for i, item in enumerate(items)]
    rejected: dict[int, Any] = {}
    for error in response_json.get("errors") or []:
        index = error.get("index")
        if isinstance(index, int) and 0 <= index < len(keys):
            rejected[keys[index]] = error.get("errors") or error
    return SendResult(
        accepted_keys=[k for k in keys if k not in rejected],
        rejected=rejected,
        duplicate_count=int(response_json.get("duplicate") or 0),
    )


Sender = Callable[[list[dict[str, Any]]], "SendResult | dict[str, Any]"]


def thinning_event(
    report: dict[str, Any], now: datetime, site_id: str | None = None
) -> dict[str, Any]:
    """The `buffer` event telling Enexa what the outbox thinned or dropped."""
    return new_event(
        site_id or report.get("site_id") or "",
        "buffer",
        f"Outbox over its bound: {report['thinned']} readings thinned, "
        f"{report['dropped_expired']} dropped for age.",
        now,
        "warning",
        {k: v for k, v in report.items() if k != "site_id"},
    )


class Flusher:
    """Drains an Outbox through `send_readings` / `send_events`, a bounded amount per call.

    The senders get a list of wire payloads and answer a SendResult whose keys are positions
    in that list (`result_from_response(payloads, body)` builds it), or Enexa's answer dict
    itself; raising (connection refused, 5xx, timeout) counts as a transient failure."""

    def __init__(
        self,
        box: Outbox,
        send_readings: Sender,
        send_events: Sender,
        batch_size: int = 500,
        max_rate_per_s: float = 2000.0,
        jitter_s: tuple[float, float] = (1.0, 10.0),
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        *,
        max_batches_per_run: int = 8,
        probe_size: int = 10,
        site_id: str | None = None,
        wall: Callable[[], datetime] | None = None,
    ):
        self.box = box
        self.senders = {"reading": send_readings, "event": send_events}
        self.batch_size = batch_size
        self.max_rate_per_s = max_rate_per_s
        self.jitter_s = jitter_s
        self.rng = rng or random.Random()  # noqa: S311 - spreading load, not security
        self.clock = clock
        self.sleep = sleep
        self.max_batches_per_run = max_batches_per_run
        self.probe_size = probe_size
        self.site_id = site_id
        self.wall = wall or box.clock
        self._free_at = 0.0  # clock time from which the rate allows the next batch
        self._backlog_at: float | None = None  # clock time the backlog may be sent from

    # -- connection state --------------------------------------------------------------------

    # Stored as RFC 3339 (format_timestamp); parse_timestamp also reads the "+00:00" form
    # earlier versions stored, so an outage spanning an upgrade is still known.
    @property
    def lost_since(self) -> datetime | None:
        return parse_timestamp(self.box.get_meta(LOST_SINCE))

    @property
    def live_since(self) -> datetime | None:
        return parse_timestamp(self.box.get_meta(LIVE_SINCE))

    def on_connection_lost(self, now: datetime | None = None) -> None:
        """Enexa is unreachable: hold the data, probe now and then with a small batch."""
        if self.lost_since is None:
            now = now or self.wall()
            log.warning("Enexa unreachable since %s: buffering", now.isoformat())
            self.box.set_meta(LOST_SINCE, format_timestamp(now))

    def on_connection_restored(self, now: datetime | None = None) -> None:
        """Enexa answers again: live data goes at once, the backlog after a random delay."""
        if self.lost_since is None:
            return
        now = now or self.wall()
        self.box.set_meta(LIVE_SINCE, format_timestamp(now))
        self.box.set_meta(LOST_SINCE, None)
        self._start_jitter()
        log.info("Enexa reachable again at %s: backlog in %.1f s", now.isoformat(), self.delay_s)

    def _start_jitter(self) -> None:
        self._backlog_at = self.clock() + self.rng.uniform(*self.jitter_s)

    @property
    def delay_s(self) -> float:
        """Seconds left before the backlog may go (0 when it may go now)."""
        if self._backlog_at is None:
            return 0.0
        return max(0.0, self._backlog_at - self.clock())

    # -- sending -----------------------------------------------------------------------------

    def run_once(self, now: datetime | None = None) -> dict[str, int]:
        """Send at most `max_batches_per_run` batches (events first, then readings); return
        counts of what was sent, acked, rejected, dead-lettered and transient failures."""
        now = now or self.wall()
        stats = {"sent": 0, "acked": 0, "duplicate": 0, "rejected": 0, "dead_lettered": 0}
        stats["transient"] = 0
        report = self.box.take_thinning_report()
        if report:
            self.box.add_event(thinning_event(report, now, self.site_id))

        batches = 0
        for kind in ("event", "reading"):
            while batches < self.max_batches_per_run:
                lost = self.lost_since is not None
                live_since = self.live_since
                if live_since is not None and self._backlog_at is None:
                    self._start_jitter()  # a restarted worker: a fresh delay rather than none
                limit = self.probe_size if lost else self.batch_size
                items = self.box.next_batch(kind, limit, live_since=live_since)
                if live_since is not None and self.delay_s > 0 and not lost:
                    # Within the randomised delay only what was read since the restore goes.
                    waiting = [i for i in items if i.enqueued_at < live_since]
                    self.box.release(i.key for i in waiting)
                    items = [i for i in items if i.enqueued_at >= live_since]
                if not items:
                    break
                batches += 1
                ok = self._send(kind, items, live_since, lost, stats)
                if not ok or lost or len(items) < limit:
                    break
            if stats["transient"]:
                break  # Enexa is away: nothing more this run
        live_since = self.live_since
        if live_since is not None and self.delay_s == 0 and not self._backlog_left(live_since):
            self.box.set_meta(LIVE_SINCE, None)  # the outage is fully caught up
            self._backlog_at = None
        return stats

    def _backlog_left(self, live_since: datetime) -> bool:
        return any(self.box.backlog_count(kind, live_since) for kind in ("reading", "event"))

    def _send(
        self,
        kind: str,
        items: list[OutboxItem],
        live_since: datetime | None,
        lost: bool,
        stats: dict[str, int],
    ) -> bool:
        payloads = []
        for item in items:
            payload = item.payload
            if kind == "reading" and (lost or (live_since and item.enqueued_at < live_since)):
                payload = {**payload, "backfilled": True}
            payloads.append(payload)
        self._wait_for_rate(len(payloads))
        try:
            answer = self.senders[kind](payloads)
            result = (
                answer if isinstance(answer, SendResult) else result_from_response(payloads, answer)
            )
        except Exception as exc:  # noqa: BLE001 - any failure to deliver keeps the data
            result = SendResult(transient_error=f"{type(exc).__name__}: {exc}")
        stats["sent"] += len(items)
        if result.transient_error:
            (log.debug if lost else log.warning)(
                "Sending %d %ss failed: %s", len(items), kind, result.transient_error
            )
            self.box.release(i.key for i in items)
            stats["transient"] += 1
            self.on_connection_lost()
            return False
        if lost:
            self.on_connection_restored()
        done = {*result.accepted_keys, *result.duplicate_keys}
        self.box.ack(items[p].key for p in sorted(done))
        for position, errors in result.rejected.items():
            if self.box.reject(items[position].key, errors):
                stats["dead_lettered"] += 1
        unanswered = set(range(len(items))) - done - set(result.rejected)
        self.box.release(items[p].key for p in sorted(unanswered))
        stats["acked"] += len(done)
        stats["duplicate"] += len(result.duplicate_keys) + result.duplicate_count
        stats["rejected"] += len(result.rejected)
        return True

    def _wait_for_rate(self, count: int) -> None:
        # A schedule of send slots: each batch books count / rate seconds, so over any window
        # no more than rate x window (+ one batch) readings leave.
        now = self.clock()
        if self._free_at > now:
            self.sleep(self._free_at - now)
            now = self.clock()
        self._free_at = max(self._free_at, now) + count / self.max_rate_per_s

"""The one client of Enexa's contract: provisioning, configuration, telemetry, status, firmware."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from shared.errors import SchemaError
from shared.events import Event
from shared.status import StatusReport
from shared.telemetry import TelemetryReading

log = logging.getLogger(__name__)

MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class EnexaError(Exception):
    """Any failure talking to Enexa."""


class EnexaAuthError(EnexaError):
    """401/403: the key is missing, revoked or not allowed; retrying will not help."""

    def __init__(self, status: int, detail: str):
        self.status = status
        super().__init__(f"Enexa refused the credentials ({status}): {detail}")


class EnexaRejected(EnexaError):
    """A 4xx answer: the request itself is wrong; `errors` maps fields to messages."""

    def __init__(self, status: int, problem: dict[str, Any]):
        self.status = status
        self.problem = problem
        self.errors: dict[str, Any] = problem.get("errors") or {}
        detail = problem.get("detail") or problem.get("title") or ""
        super().__init__(f"Enexa rejected the request ({status}): {detail} {self.errors or ''}")


class EnexaUnavailable(EnexaError):
    """Enexa did not answer usefully after the retries; try again after `retry_after` s."""

    def __init__(self, message: str, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message)


def _retry_after_s(response: requests.Response) -> float | None:
    """`Retry-After` as seconds, from either its delta-seconds or its HTTP-date form."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {"detail": response.text[:500]}
    return data if isinstance(data, dict) else {"data": data}


class EnexaClient:
    """Calls Enexa with retries: backoff with jitter on connection errors and 5xx, `Retry-After`
    honoured (up to `max_retry_after_s`) on 429/503, no retry on 401/403 or other 4xx."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 5.0,
        max_retries: int = 3,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        max_retry_after_s: float = 30.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.session = session or requests.Session()
        self.sleep = sleep
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_retry_after_s = max_retry_after_s

    # -- plumbing ---------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return path if "://" in path else f"{self.base_url}{path}"

    def _backoff(self, attempt: int) -> float:
        # Full jitter: a thousand gateways retrying together spread out instead of stampeding.
        ceiling = min(self.max_backoff_s, self.backoff_s * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
        accept: tuple[int, ...] = (),
        stream: bool = False,
    ) -> requests.Response:
        """Send with retries; returns a 2xx/3xx response or one whose status is in `accept`."""
        all_headers = {"Accept": "application/json", **(headers or {})}
        bearer = token or self.api_key
        if bearer and (
            "://" not in path or urlsplit(path).netloc == urlsplit(self.base_url).netloc
        ):
            all_headers["Authorization"] = f"Bearer {bearer}"
        url = self._url(path)
        last_error = ""
        retry_after: float | None = None
        for attempt in range(self.max_retries + 1):
            last_try = attempt == self.max_retries
            try:
                response = self.session.request(
                    method,
                    url,
                    json=json,
                    headers=all_headers,
                    timeout=self.timeout_s,
                    stream=stream,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                log.warning("Enexa %s %s failed (attempt %s): %s", method, path, attempt + 1, exc)
                if not last_try:
                    self.sleep(self._backoff(attempt))
                continue
            status = response.status_code
            if status < 400 or status in accept:
                return response
            if status in (401, 403):
                raise EnexaAuthError(status, _json(response).get("detail", ""))
            if status not in RETRY_STATUSES:
                raise EnexaRejected(status, _json(response))
            retry_after = _retry_after_s(response)
            last_error = f"HTTP {status}"
            log.warning("Enexa %s %s answered %s (attempt %s)", method, path, status, attempt + 1)
            response.close()
            if last_try:
                break
            if retry_after is not None and status in (429, 503):
                if retry_after > self.max_retry_after_s:
                    # Enexa asks for a longer pause than a task should block: give up now and
                    # let the caller come back after `retry_after`.
                    break
                self.sleep(retry_after)
            else:
                self.sleep(self._backoff(attempt))
        raise EnexaUnavailable(
            f"Enexa {method} {path} unavailable: {last_error}", retry_after=retry_after
        )

    def _get(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return _json(self.request("GET", path, **kwargs))

    def _post(self, path: str, body: Any, **kwargs: Any) -> dict[str, Any]:
        return _json(self.request("POST", path, json=body, **kwargs))

    def _post_batch(
        self, path: str, items: list[dict[str, Any]], parse: Callable[[Any], Any], id_key: str
    ) -> dict[str, Any]:
        """Post `{"items": [...]}`; an item our own schema refuses is reported as rejected at its
        index (so the outbox can dead-letter it) instead of failing the batch."""
        sent: list[int] = []
        body: list[dict[str, Any]] = []
        local_errors: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            try:
                body.append(parse(item).to_dict())
                sent.append(index)
            except SchemaError as exc:
                local_errors.append(
                    {"index": index, "message_id": item.get(id_key), "errors": exc.errors}
                )
        result: dict[str, Any] = {"accepted": 0, "duplicate": 0, "rejected": 0, "errors": []}
        if body:
            # A 400 whose body carries the per-item counts is a batch with every item rejected.
            response = self.request("POST", path, json={"items": body}, accept=(400,))
            result = _json(response)
            if response.status_code == 400 and "rejected" not in result:
                raise EnexaRejected(400, result)
        errors = [
            {**error, "index": sent[error["index"]]}
            if isinstance(error.get("index"), int) and 0 <= error["index"] < len(sent)
            else error
            for error in result.get("errors") or []
        ]
        result["errors"] = sorted(
            errors + local_errors,
            key=lambda e: e.get("index") if e.get("index") is not None else -1,
        )
        result["rejected"] = int(result.get("rejected") or 0) + len(local_errors)
        return result

    # -- provisioning -----------------------------------------------------------------------

    def register(self, serial: str, site_id: str, enrollment_secret: str) -> dict[str, Any]:
        """`{"controller_id", "api_key", "config_url"}`; the key becomes this client's key."""
        result = self._post(
            "/v1/provisioning/register",
            {"serial": serial, "site_id": site_id},
            token=enrollment_secret,
        )
        if result.get("api_key"):
            self.api_key = result["api_key"]
        return result

    def initial_config(self) -> dict[str, Any]:
        return self._get("/v1/provisioning/initial-config")

    def activate(
        self, tests_passed: bool, status: str = "ready", reason: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"status": status, "tests_passed": tests_passed}
        if reason:
            body["detail"] = reason  # Enexa keeps it as the activation detail
        return self._post("/v1/provisioning/activate", body)

    # -- configuration ----------------------------------------------------------------------

    def config_version(self, controller_id: str) -> dict[str, Any]:
        """The cheap poll: `{"version", "updated_at"}`."""
        return self._get(f"/v1/controllers/{controller_id}/config/version")

    def config(
        self, controller_id: str, etag: str | None = None
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The full configuration and its ETag; `(None, etag)` when unchanged (304)."""
        headers = {"If-None-Match": etag} if etag else {}
        response = self.request("GET", f"/v1/controllers/{controller_id}/config", headers=headers)
        if response.status_code == 304:
            return None, etag
        return _json(response), response.headers.get("ETag")

    # -- reporting --------------------------------------------------------------------------

    def post_telemetry(self, readings: list[dict[str, Any]]) -> dict[str, Any]:
        """One batch; `{"accepted", "duplicate", "rejected", "errors": [{"index", ...}]}`."""
        return self._post_batch("/v1/telemetry", readings, TelemetryReading.from_dict, "message_id")

    def post_events(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        return self._post_batch("/v1/events", events, Event.from_dict, "event_id")

    def post_status(self, report: dict[str, Any]) -> dict[str, Any]:
        return self._post("/v1/status", StatusReport.from_dict(report).to_dict())

    # -- firmware ---------------------------------------------------------------------------

    def firmware_latest(self, controller_id: str) -> dict[str, Any] | None:
        """`{"version", "url", "sha256"}`, or None when no release targets this controller."""
        response = self.request(
            "GET", f"/v1/firmware/latest?controller={controller_id}", accept=(404,)
        )
        return None if response.status_code == 404 else _json(response)

    def report_firmware(
        self, controller_id: str, current_version: str, status: str, error: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"current_version": current_version, "status": status}
        if error:
            body["error"] = error
        return self._post(f"/v1/controllers/{controller_id}/firmware", body)

    def download(self, url: str, max_bytes: int = MAX_DOWNLOAD_BYTES) -> bytes:
        """The file at `url` (relative to Enexa or absolute), refused beyond `max_bytes`."""
        response = self.request("GET", urljoin(self.base_url + "/", url), stream=True)
        with response:
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > max_bytes:
                raise EnexaError(f"Download of {declared} bytes exceeds {max_bytes}.")
            chunks, size = [], 0
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise EnexaError(f"Download exceeds {max_bytes} bytes.")
                chunks.append(chunk)
        return b"".join(chunks)

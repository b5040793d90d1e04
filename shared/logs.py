"""Logging on both sides: the request id that follows one command from Enexa's request through
Amperio's API into the gateway's task, and an optional JSON line format."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# The HTTP header that carries the id (Enexa's caller -> Enexa -> Amperio's API), and the
# Celery message header that carries it into a task.
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_META = "HTTP_X_REQUEST_ID"
TASK_HEADER = "request_id"
# What a caller's id may look like; anything else (too long, odd characters that could forge
# log lines) is replaced by a new id.
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
LOG_FORMATS = ("plain", "json")
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(value: Any) -> str:
    """The caller's id when it is a plausible one, else a new id."""
    if isinstance(value, str) and VALID_REQUEST_ID.fullmatch(value):
        return value
    return new_request_id()


def current_request_id() -> str | None:
    return _request_id.get()


@contextmanager
def request_context(request_id: str | None) -> Iterator[str | None]:
    """Log records within the block carry `request_id`; the previous id is restored after."""
    token = _request_id.set(request_id)
    try:
        yield request_id
    finally:
        _request_id.reset(token)


def bind_request_id(request_id: str | None) -> None:
    """Set the id for what follows in this context (a task's run; cleared by the caller)."""
    _request_id.set(request_id)


def _on_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    request_id = _request_id.get()
    if request_id and headers is not None:
        headers.setdefault(TASK_HEADER, request_id)


def task_request_id(request: Any) -> str | None:
    """The id a task's message carries (Celery keeps a custom header on the request, or, in
    some versions, under `request.headers`)."""
    value = getattr(request, TASK_HEADER, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(TASK_HEADER)
    return value if isinstance(value, str) and VALID_REQUEST_ID.fullmatch(value) else None


def _on_prerun(task: Any = None, **_: Any) -> None:
    _request_id.set(task_request_id(task.request) if task is not None else None)


def _on_postrun(**_: Any) -> None:
    _request_id.set(None)  # a worker's next task starts without the last one's id


def format_handlers(logger: logging.Logger, log_format: str) -> None:
    """Every handler of `logger` adds the request id, and writes JSON when asked: for the
    handlers Celery sets up itself."""
    for handler in logger.handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
        if log_format == "json":
            handler.setFormatter(JsonFormatter())


def connect_task_signals(signals: Any, log_format: str) -> None:
    """Wire Celery's signals (the `celery.signals` module, passed in: shared imports no
    Celery): a task published while a request id is bound carries it in its message and runs
    with it bound, and the worker's own log handlers add it (in JSON when `log_format` says)."""
    signals.before_task_publish.connect(_on_publish, weak=False)
    signals.task_prerun.connect(_on_prerun, weak=False)
    signals.task_postrun.connect(_on_postrun, weak=False)

    def adopt(logger: logging.Logger | None = None, **_: Any) -> None:
        if logger is not None:
            format_handlers(logger, log_format)

    signals.after_setup_logger.connect(adopt, weak=False)
    signals.after_setup_task_logger.connect(adopt, weak=False)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` ("-" outside a request or task) to every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = _request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (arguments applied), request id,
    and the exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or _request_id.get(),
            "process": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` of one console handler in `log_format` (plain or json),
    every record carrying the request id."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "shared.logs.RequestIdFilter"}},
        "formatters": {
            "plain": {"format": PLAIN_FORMAT},
            "json": {"()": "shared.logs.JsonFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json" if log_format == "json" else "plain",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
    }

"""The embedded broker: kombu's filesystem transport with message files that appear whole.

kombu's own `_put` writes the file in place, so a polling worker can claim it half-written and
fail on empty JSON; and its `_get` moves claimed files to the system temp dir, which may be
another filesystem (a copy, not an atomic rename). Here a message is written under a hidden
name and renamed into the queue folder, and claimed by a rename inside the broker folder."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

SCHEME = "filesystem"


class Channel(filesystem.Channel):
    """Atomic put and claim; otherwise kombu's filesystem channel."""

    # kombu's own base classes disagree on this signature; this one matches filesystem.Channel.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        # A leading dot never matches a queue name, so no worker claims the file half-written.
        partial = os.path.join(self.data_folder_out, f".{name}.partial")
        with open(partial, "wb") as f:
            f.write(str_to_bytes(dumps(payload)))
        os.replace(partial, os.path.join(self.data_folder_out, name))

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            claimed = os.path.join(self.processed_folder, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except OSError:  # another consumer claimed it first
                continue
            try:
                payload = Path(claimed).read_bytes()
            finally:
                os.remove(claimed)
            return loads(bytes_to_str(payload))
        raise Empty()


class Transport(filesystem.Transport):
    """The filesystem transport with the atomic channel above."""

    Channel = Channel


# `filesystem://` itself means this transport in every process that loads the Celery app, so
# a CELERY_BROKER_URL naming the filesystem broker (Celery prefers it to the app's
# configuration) cannot bring back kombu's racy one.
TRANSPORT_ALIASES[SCHEME] = f"{__name__}:Transport"

"""The embedded broker: kombu's filesystem transport with message files that appear whole.

kombu's own transport creates a message file and then writes into it, so a worker polling the
folder can take a file that is still empty and fail to decode it (kombu issue #1551, seen here
as a JSONDecodeError that stops the worker's consumer). Here a message is written in a staging
folder and renamed into the queue folder, and a consumer claims a file by renaming it into the
processed folder on the same filesystem: the rename is atomic, so one consumer gets it, whole."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

SCHEME = "amperiofs"


class Channel(filesystem.Channel):
    """Atomic put and claim; the folders come from the transport options as in kombu's."""

    @property
    def staging_folder(self) -> Path:
        return Path(self.transport_options.get("staging_folder", "staging"))

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        # The millisecond prefix keeps the order of sending across processes (the clock is
        # system-wide); the uuid keeps names unique.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        staged = self.staging_folder / name
        try:
            staged.write_bytes(str_to_bytes(dumps(payload)))
            os.replace(staged, Path(self.data_folder_out) / name)
        except OSError as exc:
            raise ChannelError(f"Cannot add {name!r} to the queue folder") from exc

    def _get(self, queue: str) -> Any:
        suffix = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != suffix:
                continue
            claimed = Path(self.processed_folder) / name
            try:
                os.rename(Path(self.data_folder_in) / name, claimed)
            except FileNotFoundError:  # another consumer claimed it first
                continue
            try:
                payload = claimed.read_bytes()
                if not self.store_processed:
                    claimed.unlink()
            except OSError as exc:
                raise ChannelError(f"Cannot read {name!r} from the queue") from exc
            return loads(bytes_to_str(payload))
        raise Empty()


class Transport(filesystem.Transport):
    """kombu's filesystem transport with the atomic channel above."""

    Channel = Channel
    driver_type = driver_name = SCHEME


# `amperiofs://` in a broker URL resolves to this transport in any process importing this.
TRANSPORT_ALIASES[SCHEME] = "amperio.broker:Transport"

"""Enexa's embedded broker (dev, demo): kombu's filesystem transport, messages appearing whole.

kombu's filesystem channel writes a message file in place (a polling worker may read it half
written) and moves claimed files to the system temp dir (maybe another filesystem, so not an
atomic rename). Here a message is written to a hidden file and renamed into the folder, and a
consumer claims it by renaming it within the broker folder."""

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

SCHEME = "enexa-fs"
SUBFOLDERS = ("queue", "control", "processed")


class Channel(filesystem.Channel):
    """kombu's filesystem channel with a whole-file put and a rename-to-claim get."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        final = Path(
            self.data_folder_out, f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        )
        hidden = final.with_name(f".{final.name}.tmp")  # no queue matches a leading dot
        hidden.write_bytes(str_to_bytes(dumps(payload)))
        os.replace(hidden, final)

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            # <stamp>_<uuid>.<queue>.msg; a hidden (partial) file has an empty stamp part.
            stamp, _, rest = name.partition(".")
            if not stamp or rest != wanted:
                continue
            taken = Path(self.processed_folder, name)
            try:
                os.rename(Path(self.data_folder_in, name), taken)
            except OSError:  # another worker took it
                continue
            data = taken.read_bytes()
            taken.unlink()
            return loads(bytes_to_str(data))
        raise Empty()


class Transport(filesystem.Transport):
    """The filesystem transport on the channel above."""

    Channel = Channel


TRANSPORT_ALIASES[SCHEME] = f"{__name__}:Transport"


def embedded(folder: Path) -> dict[str, Any]:
    """Celery settings of the embedded broker in `folder` (created): one folder in and out, so
    the web process, beat and workers on one machine meet there."""
    for sub in SUBFOLDERS:
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return {
        "broker_url": f"{SCHEME}://",
        "broker_transport_options": {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
            "polling_interval": 0.1,
        },
    }

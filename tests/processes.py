"""The processes a test started, found by a marker in their environment: every descendant
inherits it, even one in a session of its own or whose parent has gone."""

from __future__ import annotations

from pathlib import Path


def processes_with(marker: str) -> list[int]:
    """Pids whose environment carries `marker` (only the test's own processes carry it)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""

"""The gateway state is shared between processes and survives a reopen."""

import subprocess
import sys

from amperio.state import GatewayState


def test_a_value_set_in_one_process_is_seen_by_another(tmp_path):
    path = tmp_path / "state.sqlite3"
    code = (
        "from amperio.state import GatewayState;"
        f"GatewayState({str(path)!r}).update({{'modbus_link_up': True, 'buffer_depth': 3}})"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    state = GatewayState(path)
    assert state.get("modbus_link_up") is True
    assert state.snapshot() == {"modbus_link_up": True, "buffer_depth": 3}
    assert state.get("missing", "default") == "default"

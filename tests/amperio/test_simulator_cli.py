"""`python -m amperio.simulator` runs several units on their own ports until interrupted."""

import signal
import sys

from amperio.modbus.client import ChargePostClient
from amperio.procs import Proc, wait_until


def test_the_simulator_command_serves_several_units_until_interrupted(tmp_path):
    port_file = tmp_path / "ports"
    args = [sys.executable, "-m", "amperio.simulator", "--port", "0", "--units", "2"]
    proc = Proc("simulator", [*args, "--port-file", str(port_file), "--speed", "10"], tmp_path)
    try:
        wait_until(lambda: len(port_file.read_text().split()) == 2, 20, what="port file")
        ports = [int(p) for p in port_file.read_text().split()]
        serials = []
        for port in ports:
            with ChargePostClient("127.0.0.1", port, timeout_s=2) as client:
                serials.append(client.read(["serial"])["serial"])
        assert serials == ["CP-SIM-0001", "CP-SIM-0002"]
        proc.signal(signal.SIGINT)
        assert proc.popen.wait(timeout=20) == 0
        assert "listening on 127.0.0.1:" in proc.log_path.read_text()
    finally:
        proc.stop()

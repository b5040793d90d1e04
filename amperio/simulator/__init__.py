"""The ChargePost simulator: a Modbus/TCP server over the register map that behaves like a unit."""

from amperio.simulator.faults import FaultPlan
from amperio.simulator.physics import ChargePostState
from amperio.simulator.server import ChargePostSimulator

__all__ = ["ChargePostSimulator", "ChargePostState", "FaultPlan"]

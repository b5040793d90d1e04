"""Modbus/TCP access to ChargePost units: the register map as data, its codec and a client."""

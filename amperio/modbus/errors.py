"""Errors the Modbus client raises: link failures, device exception responses, refused values."""


class ModbusError(Exception):
    """Base of every error raised by amperio.modbus."""


class ModbusLinkError(ModbusError):
    """The device could not be reached or did not answer in time (connection, timeout)."""


class ModbusDeviceError(ModbusError):
    """The device answered with a Modbus exception response for a register."""

    def __init__(self, message: str, register: str | None = None, code: int | None = None):
        super().__init__(message)
        self.register = register
        self.code = code


class RegisterRangeError(ModbusError, ValueError):
    """A value outside the register's range, or a register that cannot be written; nothing sent."""

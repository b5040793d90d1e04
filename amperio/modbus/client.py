"""ChargePostClient: reads and writes a ChargePost by register name over pymodbus 3.x."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ExceptionResponse

from amperio.modbus.codec import Value, decode, encode
from amperio.modbus.errors import ModbusDeviceError, ModbusLinkError, RegisterRangeError
from amperio.modbus.registermap import ReadBlock, Register, RegisterMap, load_map

log = logging.getLogger(__name__)

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class ChargePostClient:
    """One Modbus/TCP connection to a ChargePost unit, addressed by register name.

    Link failures are retried with a fresh connection after an exponential backoff;
    exception responses are not retried (the device answered)."""

    def __init__(
        self,
        host: str,
        port: int = 502,
        device_id: int = 1,
        register_map: RegisterMap | None = None,
        timeout_s: float = 2.0,
        retries: int = 2,
        backoff_s: float = 0.1,
        backoff_max_s: float = 2.0,
    ):
        self.host, self.port, self.device_id = host, port, device_id
        self.map = register_map or load_map()
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.requests_sent = 0
        self._snapshot_plan: list[ReadBlock] | None = None
        self._lock = threading.RLock()
        # pymodbus retries are off: a retry here always starts from a fresh connection, so a
        # late answer to a timed-out request can never be taken for the next one's.
        self._modbus = ModbusTcpClient(
            host, port=port, timeout=timeout_s, retries=0, reconnect_delay=0
        )

    def __enter__(self) -> ChargePostClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._modbus.close()

    # -- reading -----------------------------------------------------------------------------

    def read_snapshot(self) -> dict[str, Value | None]:
        """Every readable register, in the fewest requests the map allows."""
        if self._snapshot_plan is None:
            self._snapshot_plan = self.map.read_plan()
        return self._read_blocks(self._snapshot_plan)

    def read(self, names: Iterable[str]) -> dict[str, Value | None]:
        """The named registers (coalesced into as few requests as possible)."""
        names = list(names)
        for name in names:
            if not self.map[name].readable:
                raise RegisterRangeError(f"{name} is write-only")
        return self._read_blocks(self.map.read_plan(names))

    def _read_blocks(self, blocks: list[ReadBlock]) -> dict[str, Value | None]:
        values: dict[str, Value | None] = {}
        with self._lock:
            for block in blocks:
                try:
                    words = self._read_words(block.table, block.address, block.count)
                except ModbusDeviceError:
                    if len(block.registers) == 1:
                        raise
                    self._raise_for_failing_register(block)
                    raise
                for register in block.registers:
                    offset = register.address - block.address
                    values[register.name] = decode(
                        register, words[offset : offset + register.count]
                    )
        return values

    def _raise_for_failing_register(self, block: ReadBlock) -> None:
        """Read the block's registers one by one so the error names the one the device refused."""
        for register in block.registers:
            self._read_words(register.table, register.address, register.count, register.name)

    def _read_words(
        self, table: str, address: int, count: int, name: str | None = None
    ) -> list[int]:
        call = (
            self._modbus.read_holding_registers
            if table == "holding"
            else self._modbus.read_input_registers
        )
        response = self._request(
            lambda: call(address, count=count, device_id=self.device_id),
            lambda: name or self._names_at(table, address, count),
        )
        return list(response.registers)

    def _names_at(self, table: str, address: int, count: int) -> str:
        names = [
            r.name
            for r in self.map
            if r.table == table and r.address < address + count and r.end > address
        ]
        return ", ".join(names) or f"{table} {address}+{count}"

    # -- writing -----------------------------------------------------------------------------

    def write(self, name: str, value: Value) -> Value | None:
        """Write one register (06 for one word, 16 for more) and return the value read back."""
        return self.write_many({name: value})[name]

    def write_many(
        self, values: Mapping[str, Value], read_back: bool = True
    ) -> dict[str, Value | None]:
        """Write several registers, all checked before the first is sent; return them read back
        (as given where a register cannot be read, or with `read_back=False`, which saves the
        read request when the caller has no use for it)."""
        encoded = [
            (register, encode(register, value)) for register, value in self._writable(values)
        ]
        with self._lock:
            for register, words in encoded:
                self._write_words(register, words)
            readable = [r.name for r, _ in encoded if r.readable and read_back]
            answered = self.read(readable) if readable else {}
        return {r.name: answered.get(r.name, values[r.name]) for r, _ in encoded}

    def _writable(self, values: Mapping[str, Value]) -> list[tuple[Register, Value]]:
        checked = []
        for name, value in values.items():
            register = self.map[name]
            if not register.writable or register.table != "holding":
                raise RegisterRangeError(f"{name} is not writable ({register.access})")
            if value is None:
                raise RegisterRangeError(f"{name}: no value given")
            checked.append((register, value))
        return checked

    def _write_words(self, register: Register, words: list[int]) -> None:
        if register.count == 1:
            call: Callable[[], Any] = lambda: self._modbus.write_register(  # noqa: E731
                register.address, words[0], device_id=self.device_id
            )
        else:
            call = lambda: self._modbus.write_registers(  # noqa: E731
                register.address, words, device_id=self.device_id
            )
        self._request(call, register.name)

    # -- one request, with reconnection ------------------------------------------------------

    def _request(self, call: Callable[[], Any], what: str | Callable[[], str]) -> Any:
        """Send one request, reconnecting on link failures; `what` names it in errors."""
        delay = self.backoff_s
        last_error: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)
            try:
                if not self._modbus.connected and not self._modbus.connect():
                    raise ModbusLinkError(f"cannot connect to {self.host}:{self.port}")
                self.requests_sent += 1
                response = call()
            except (ModbusException, ModbusLinkError, OSError) as exc:
                last_error = exc
                what = what if isinstance(what, str) else what()
                log.warning(
                    "modbus %s:%s %s failed (attempt %s): %s",
                    self.host,
                    self.port,
                    what,
                    attempt + 1,
                    exc,
                )
                self._modbus.close()
                continue
            if isinstance(response, ExceptionResponse) or response.isError():
                what = what if isinstance(what, str) else what()
                code = getattr(response, "exception_code", None)
                meaning = EXCEPTION_NAMES.get(code or 0, "error")
                raise ModbusDeviceError(
                    f"{self.host}:{self.port} refused {what}: exception {code} ({meaning})",
                    register=what,
                    code=code,
                )
            return response
        what = what if isinstance(what, str) else what()
        raise ModbusLinkError(
            f"{self.host}:{self.port} {what}: no answer after {self.retries + 1} attempts: "
            f"{last_error}"
        ) from last_error

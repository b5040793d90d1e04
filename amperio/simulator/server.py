"""ChargePostSimulator: a pymodbus TCP server in a background thread serving ChargePostState."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ExceptionResponse
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from amperio.modbus.codec import check_range, decode, encode
from amperio.modbus.errors import RegisterRangeError
from amperio.modbus.registermap import Register, RegisterMap, load_map
from amperio.simulator.faults import FaultPlan
from amperio.simulator.physics import ChargePostState

log = logging.getLogger(__name__)
TICK_S = 1.0  # real seconds between physics updates when nobody is polling
MIN_CATCH_UP_S = 0.05
# The function codes the register map speaks of: read holding, read input, write one, write many.
SUPPORTED_FUNCTIONS = frozenset({3, 4, 6, 16})


class _MapFunctionsOnly(ServerRequestHandler):
    """Answers exception 01 (illegal function) to any function code outside the map.

    pymodbus would otherwise acknowledge coils (05, 15), mask write (22) and read/write (23)
    against its own memory without the unit applying them; a controller tested against that
    would believe in writes the real unit refuses."""

    async def handle_request(self) -> None:
        pdu = self.last_pdu
        if pdu is not None and pdu.function_code not in SUPPORTED_FUNCTIONS:
            refusal = ExceptionResponse(
                pdu.function_code,
                ExcCodes.ILLEGAL_FUNCTION,
                device_id=pdu.dev_id,
                transaction=pdu.transaction_id,
            )
            self.server_send(refusal, self.last_addr)
            return
        await super().handle_request()


class _MapServer(ModbusTcpServer):
    """pymodbus' TCP server with each connection handled by `_MapFunctionsOnly`."""

    def callback_new_connection(self) -> ServerRequestHandler:
        return _MapFunctionsOnly(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class ChargePostSimulator:
    """A simulated ChargePost on 127.0.0.1:`port` serving the register map over Modbus/TCP.

    `speed` simulated seconds pass per real second (0: time moves only through `step`)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        seed: int = 0,
        register_map: RegisterMap | None = None,
        state: ChargePostState | None = None,
    ):
        self.host, self.port, self.speed, self.seed = host, port, speed, seed
        self.map = register_map or load_map()
        self.state = state or ChargePostState(seed=seed)
        self.faults = FaultPlan(_dropper=self._drop_connections)
        # Requests served by function code (03, 04, 06, 16), for tests and the bench.
        self.requests_by_function: Counter[int] = Counter()
        self._by_address: dict[str, dict[int, Register]] = {"holding": {}, "input": {}}
        for register in self.map:
            for offset in range(register.count):
                self._by_address[register.table][register.address + offset] = register
        self._touched_cache: dict[tuple[str, int, int], list[Register]] = {}
        self._encoded: dict[str, tuple[int | float | str | None, list[int]]] = {}
        self._sim_offset_s = 0.0
        self._real_start = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: _MapServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- time ----------------------------------------------------------------------------------

    def now_s(self) -> float:
        """Simulated seconds since start."""
        return self._sim_offset_s + (time.monotonic() - self._real_start) * self.speed

    def step(self, dt_s: float) -> None:
        """Move simulated time forward by `dt_s` at once (deterministic tests)."""
        with self.state.lock:
            self._sim_offset_s += dt_s
            self.state.advance_to(self.now_s())

    def _catch_up(self) -> None:
        with self.state.lock:
            # Physics moves in steps of at least 50 ms: polls closer together see the same values.
            if self.now_s() - self.state.now_s >= MIN_CATCH_UP_S:
                self.state.advance_to(self.now_s())

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> ChargePostSimulator:
        """Serve in a background thread; returns once listening (self.port is then set)."""
        self._thread = threading.Thread(
            target=self._run, name=f"chargepost-{self.port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("simulator did not start within 10 s")
        if self._error is not None:
            raise RuntimeError(f"simulator failed to start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = None

    def __enter__(self) -> ChargePostSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:  # noqa: BLE001 - handed to start() in the caller's thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        ticker = loop.create_task(self._tick())
        loop.run_forever()
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(ticker)
        loop.close()

    async def _listen(self) -> None:
        self._server = _MapServer(self._device(), address=(self.host, self.port))
        await self._server.serve_forever(background=True)
        sockets = getattr(self._server.transport, "sockets", None)
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("ChargePost simulator listening on %s:%s", self.host, self.port)

    async def _shutdown(self) -> None:
        if self._server is not None:
            await self._server.shutdown()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            if self.speed:
                self._catch_up()

    def _drop_connections(self) -> None:
        server, loop = self._server, self._loop
        if server is None or loop is None:
            return

        done = threading.Event()

        def drop() -> None:
            for connection in list(server.active_connections.values()):
                connection.close()
            done.set()

        loop.call_soon_threadsafe(drop)
        done.wait(timeout=5)

    # -- the Modbus datastore ------------------------------------------------------------------

    def _device(self) -> SimDevice:
        def block(table: str) -> list[SimData]:
            size = max((r.end for r in self.map if r.table == table), default=1)
            return [SimData(0, count=size, values=0, datatype=DataType.REGISTERS)]

        bits = [SimData(0, values=False, datatype=DataType.BITS)]
        return SimDevice(
            id=0,  # answer every device id, as a gateway-less unit does
            simdata=(bits, list(bits), block("holding"), block("input")),
            action=self._action,
        )

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: Sequence[int] | Sequence[bool] | None,
    ) -> ExcCodes | None:
        """Called by pymodbus for each request before it reads or writes `registers`."""
        writing = set_values is not None and function_code in (6, 16)
        # pymodbus calls back twice for a write (set, then get for the echo): count and delay once.
        if writing or function_code in (3, 4):
            self.requests_by_function[function_code] += 1
            if self.faults.delay_s:
                await asyncio.sleep(self.faults.delay_s)
        touched = self._touched("input" if function_code == 4 else "holding", address, count)
        if any(r.name in self.faults.exception_for for r in touched):
            return ExcCodes.DEVICE_FAILURE
        if writing:
            return self._write(address, [int(v) for v in set_values or ()])
        self._catch_up()
        values = self.state.values()
        for register in touched:
            value = None if register.name in self.faults.undefined else values.get(register.name)
            words = self._encode(register, value)
            start = register.address - start_address
            registers[start : start + register.count] = words
        return None

    def _touched(self, table: str, address: int, count: int) -> list[Register]:
        """The registers a request overlaps (remembered: clients repeat the same requests)."""
        key = (table, address, count)
        touched = self._touched_cache.get(key)
        if touched is None:
            by_address = self._by_address[table]
            found = {by_address[a] for a in range(address, address + count) if a in by_address}
            touched = self._touched_cache[key] = sorted(found, key=lambda r: r.address)
        return touched

    def _encode(self, register: Register, value: int | float | str | None) -> list[int]:
        """The register's words for `value`, reusing the last encoding while the value holds."""
        cached = self._encoded.get(register.name)
        if cached is not None and cached[0] == value and type(cached[0]) is type(value):
            return cached[1]
        try:
            words = encode(register, value)
        except RegisterRangeError:
            log.warning("simulator value %r for %s not encodable", value, register.name)
            words = encode(register, None)
        self._encoded[register.name] = (value, words)
        return words

    def _write(self, address: int, words: list[int]) -> ExcCodes | None:
        """Check a whole write against the map first, then apply it to the state."""
        by_address = self._by_address["holding"]
        writes: list[tuple[Register, int | float | str]] = []
        position = address
        while position < address + len(words):
            register = by_address.get(position)
            if register is None or register.address != position or not register.writable:
                return ExcCodes.ILLEGAL_ADDRESS
            if register.end > address + len(words):
                return ExcCodes.ILLEGAL_ADDRESS  # only part of a multi-word value
            value = decode(register, words[position - address : register.end - address])
            try:
                if value is None:
                    raise RegisterRangeError(f"{register.name}: undefined value written")
                check_range(register, value)
            except RegisterRangeError:
                return ExcCodes.ILLEGAL_VALUE
            writes.append((register, value))
            position = register.end
        self._catch_up()
        for register, value in writes:
            self.state.apply_write(register.name, value)
        return None

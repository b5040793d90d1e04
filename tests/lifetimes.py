"""How the tests' module-wide servers live: started once, stopped after the module, whatever
happened."""

from collections.abc import Iterator
from typing import Any


def stopped_at_end(server: Any) -> Iterator[Any]:
    """For a fixture: `yield from stopped_at_end(Server(...))` hands the running server to the
    tests and stops it after them."""
    try:
        yield server
    finally:
        server.stop()

"""`make demo` (`python -m demo`): the whole system on one machine, and the process starters
that the tests and benches share (a live Enexa, a bare Enexa)."""

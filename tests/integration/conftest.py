"""Integration tests report their figures (counts, times) in the closing summary of the run."""

import json

import pytest

FIGURES: list[tuple[str, dict]] = []


@pytest.fixture
def figures(request):
    """A dict the test fills with what it measured; printed at the end of the run."""
    measured: dict = {}
    yield measured
    if measured:
        FIGURES.append((request.node.name, measured))


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    terminalreporter.section("figures reported by integration tests")
    for name, measured in FIGURES:
        terminalreporter.write_line(f"{name}: {json.dumps(measured, default=str)}")

"""Integration tests report their figures (counts, times) in the closing summary of the run
(printed by tests/conftest.py, which also gathers them from parallel workers)."""

import pytest


@pytest.fixture
def figures(request):
    """A dict the test fills with what it measured; printed at the end of the run."""
    measured: dict = {}
    yield measured
    if measured:
        # In the test's report, so that under pytest-xdist it reaches the controlling process.
        request.node.user_properties.append(("figures", measured))

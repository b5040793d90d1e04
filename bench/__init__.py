"""Benchmarks (`make bench`): each bench/*_bench.py has a main() that writes bench/results/."""

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def throwaway_database() -> Iterator[None]:
    """Django set up on the test settings, inside a test database made for the bench and
    destroyed after it (the benches that call Enexa in-process)."""
    import os

    os.environ["DJANGO_SETTINGS_MODULE"] = "enexa.settings.test"
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment, teardown_test_environment

    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0)
    try:
        yield
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()

"""A throw-away Enexa test database for the benches that run the Django code in-process."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def throwaway_database() -> Iterator[None]:
    """Django set up on enexa.settings.test, on a new test database (SQLite, or PostgreSQL with
    DATABASE_URL) destroyed afterwards."""
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


def write_results(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))

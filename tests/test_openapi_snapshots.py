"""The OpenAPI schemas of Enexa and Amperio match the snapshots committed under
tests/snapshots/, so every change to the wire shows in review as a change to those files."""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
REGENERATE = "Regenerate with `make schema-snapshots` (or UPDATE_SNAPSHOTS=1 pytest ...)."
# Which Django project serves each schema.
APIS = {"enexa": "enexa.settings.test", "amperio": "amperio.api.settings"}
DIFF_LINES = 300  # enough to read a change; a whole missing snapshot would drown the report


def generated_schema(settings_module: str) -> str:
    """The schema as `manage.py spectacular` writes it, validated, refused on any warning."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENEXA_", "AMPERIO_"))}
    env["DJANGO_SETTINGS_MODULE"] = settings_module
    result = subprocess.run(
        [sys.executable, "-m", "django", "spectacular", "--validate", "--fail-on-warn"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"schema generation failed:\n{result.stderr}"
    return result.stdout


@pytest.mark.parametrize("api", sorted(APIS))
def test_the_generated_openapi_schema_matches_its_committed_snapshot(api):
    snapshot = SNAPSHOTS / f"{api}-openapi.yaml"
    generated = generated_schema(APIS[api])
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        snapshot.parent.mkdir(exist_ok=True)
        snapshot.write_text(generated)
    committed = snapshot.read_text() if snapshot.exists() else ""
    if generated != committed:
        diff = list(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                generated.splitlines(keepends=True),
                f"tests/snapshots/{snapshot.name} (committed)",
                f"{api} schema (generated)",
            )
        )
        if len(diff) > DIFF_LINES:
            diff = [*diff[:DIFF_LINES], f"... and {len(diff) - DIFF_LINES} more lines\n"]
        report = "".join(diff)
        pytest.fail(f"The {api} OpenAPI schema changed. {REGENERATE}\n{report}", pytrace=False)

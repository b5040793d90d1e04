"""The docs stay true to the code: every environment variable the code reads is documented."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
READ = re.compile(
    r"""(?:env_(?:str|int|bool|list)\(|environ\.get\(|environ\[|getenv\()\s*["']([A-Z][A-Z0-9_]+)["']"""
)


# The interpreter's own, not the project's.
NOT_OURS = {"PYTHONPATH", "PYTHONUNBUFFERED"}


def variables_read_by_the_code() -> set[str]:
    found: set[str] = set()
    for package in ("enexa", "amperio", "shared", "demo"):
        for path in (REPO / package).rglob("*.py"):
            found |= set(READ.findall(path.read_text()))
    return found - NOT_OURS


def test_every_environment_variable_the_code_reads_is_in_the_configuration_docs():
    documented = set(
        re.findall(r"`([A-Z][A-Z0-9_]+)`", (REPO / "docs/configuration.md").read_text())
    )
    missing = sorted(variables_read_by_the_code() - documented)
    assert not missing, f"add to docs/configuration.md: {missing}"


def test_the_scan_finds_the_variables_it_is_meant_to_find():
    assert {"DATABASE_URL", "AMPERIO_SITE_ID", "ENEXA_AMPERIO_URL"} <= variables_read_by_the_code()

"""Semantic versions (semver.org 2.0.0): parsing and ordering, so 2.10.0 sorts after 2.9.0."""

from __future__ import annotations

import re
from functools import total_ordering

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)


@total_ordering
class Version:
    """A parsed version; build metadata is ignored in comparisons, as the spec says."""

    def __init__(self, text: str):
        match = SEMVER.match(text or "")
        if not match:
            raise ValueError(f"'{text}' is not a semantic version (e.g. 2.1.0).")
        self.text = text
        self.core = (int(match[1]), int(match[2]), int(match[3]))
        self.prerelease = tuple(match[4].split(".")) if match[4] else ()

    def _key(self):
        # A release sorts after its pre-releases; numeric identifiers before alphanumeric ones.
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.core, not self.prerelease, pre)

    def __eq__(self, other):
        return isinstance(other, Version) and self._key() == other._key()

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __hash__(self):
        return hash(self._key())

    def __str__(self) -> str:
        return self.text


def parse(text: str) -> Version | None:
    """The version, or None when `text` is not one (e.g. an empty firmware_version)."""
    try:
        return Version(text)
    except ValueError:
        return None


def is_valid(text: str) -> bool:
    return parse(text) is not None

"""The JSON body parser of Amperio's API: DRF's, with the nesting depth bounded."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# A dispatch nests four levels (body, params, slots, a slot); anything far deeper is abuse,
# and code walking it recursively (json.dumps of the stored params) could exhaust the stack.
MAX_DEPTH = 20
TOO_DEEP = f"JSON nested deeper than {MAX_DEPTH} levels."


def depth(value: Any) -> int:
    """How deeply `value` nests objects and arrays, found without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if not isinstance(item, list):
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            break  # deep enough to refuse: no need to walk the rest
        stack.extend((child, level + 1) for child in item)
    return deepest


class BoundedJSONParser(JSONParser):
    """Bodies nested past MAX_DEPTH are a 400 (parse error), never a RecursionError's 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            # The decoder gives up before the depth can be counted (about 1,000 levels).
            raise ParseError(TOO_DEEP) from None
        if depth(data) > MAX_DEPTH:
            raise ParseError(TOO_DEEP)
        return data

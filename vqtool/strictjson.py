"""JSON from files we did not write (.vqc headers, checkpoint metadata): no NaN or Infinity, bounded
nesting, and every malformation a ValueError that the caller turns into its own one-line error."""

from __future__ import annotations

import json

MAX_DEPTH = 6


def loads(raw: bytes | str):
    def refuse(constant):
        raise ValueError(f"{constant} is not a number here")

    try:
        value = json.loads(raw, parse_constant=refuse)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if depth(value) > MAX_DEPTH:
        raise ValueError("nested too deeply")
    return value


def depth(value, level: int = 0) -> int:
    """Nesting depth of lists and objects (counting stops just past MAX_DEPTH)."""
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max([depth(v, level + 1) for v in value.values()] or [level + 1])
    if isinstance(value, list):
        return max([depth(v, level + 1) for v in value] or [level + 1])
    return level

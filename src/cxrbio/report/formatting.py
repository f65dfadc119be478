"""How numbers appear in the report: one dash for anything missing, fixed digits, sortable keys."""

from __future__ import annotations

import math
from typing import Any

MISSING = "–"


def as_float(value: Any) -> float | None:
    """The value as a finite-or-infinite float, None when absent or NaN."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def number(value: Any, digits: int = 3) -> str:
    found = as_float(value)
    return MISSING if found is None else f"{found:.{digits}f}"


def p_value(value: Any) -> str:
    """p and q values: two significant digits, scientific below 1e-4."""
    found = as_float(value)
    if found is None:
        return MISSING
    return f"{found:.2g}" if found >= 1e-4 else f"{found:.1e}"


def sort_key(value: Any) -> str:
    """What a sortable table cell sorts by ('' for missing, which sorts last)."""
    found = as_float(value)
    return "" if found is None else repr(found)


def pct(value: Any, digits: int = 1) -> str:
    found = as_float(value)
    return MISSING if found is None else f"{100 * found:.{digits}f}"


def pct_ci(value: Any, interval: list[float] | tuple[float, float] | None) -> str:
    """'93.3 [91.3, 95.3]': a proportion in % with its interval, or the value alone when there is none."""
    if interval is None or len(interval) != 2 or any(as_float(v) is None for v in interval):
        return pct(value)
    return f"{pct(value)} [{pct(interval[0])}, {pct(interval[1])}]"

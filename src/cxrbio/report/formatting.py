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


def pct_sd(mean: Any, sd: Any) -> str:
    """'93.1 ± 2.0': a mean proportion and its SD in % (the SD left off when undefined, e.g. one fold)."""
    if as_float(mean) is None:
        return MISSING
    return pct(mean) if as_float(sd) is None else f"{pct(mean)} ± {pct(sd)}"


def pct_range(interval: list[float] | tuple[float, float] | None) -> str:
    """'90.5–95.2': a range of proportions in %."""
    if interval is None or len(interval) != 2 or any(as_float(v) is None for v in interval):
        return MISSING
    return f"{pct(interval[0])}–{pct(interval[1])}"


def signed_pct_ci(value: Any, interval: list[float] | tuple[float, float] | None, digits: int = 1) -> str:
    """'+2.1 [-0.4, 4.6]': a difference of proportions in percentage points with its interval."""
    found = as_float(value)
    if found is None:
        return MISSING
    text = f"{100 * found:+.{digits}f}"
    if interval is None or len(interval) != 2 or any(as_float(v) is None for v in interval):
        return text
    return f"{text} [{100 * interval[0]:+.{digits}f}, {100 * interval[1]:+.{digits}f}]"


def number_ci(value: Any, interval: list[float] | tuple[float, float] | None, digits: int = 3) -> str:
    """'0.052 [0.041, 0.066]': a number with its interval."""
    if interval is None or len(interval) != 2 or any(as_float(v) is None for v in interval):
        return number(value, digits)
    return f"{number(value, digits)} [{number(interval[0], digits)}, {number(interval[1], digits)}]"

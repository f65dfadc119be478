"""The analysis log: one line per ``cxrbio analyze``, appended, never rewritten (``analysis/log.jsonl``).

Why: gates can be changed after an analysis has been seen (``cxrbio analyze --config``), and a
count of passing candidates means little without the settings and the number of tests behind it.
Every analysis appends what it used (every analysis setting, gates included), which strategies
it analysed or reused, how many features it tested and passed per strategy and class, the error
rate's families, the release, and which settings changed since the previous analysis. The report
shows the log and reads its gate header from the last entry, not from the run's config.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from cxrbio import __version__
from cxrbio.run.rundir import RunDir

#: Settings shown as "gates" (the rest are logged too, and any change is named).
GATE_KEYS = ("gate_q", "gate_min_folds", "direction_rule", "gate_audit", "gate_control", "control_class",
             "primary_strategy", "error_rate_contrasts", "top_k", "match_min_rho", "match_null_quantile")


def path_of(run: RunDir) -> Any:
    return run.path("analysis_log")


def read(run: RunDir) -> list[dict[str, Any]]:
    """Every entry, oldest first; a line that does not parse (a write cut short) is skipped."""
    path = path_of(run)
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def changed(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, list[Any]]:
    """key -> [old, new] for every analysis setting that differs (empty when there is no earlier entry)."""
    if not before:
        return {}
    return {key: [before.get(key), value] for key, value in after.items() if before.get(key) != value}


def counts(candidates: dict[str, pd.DataFrame]) -> dict[str, dict[str, dict[str, int]]]:
    """strategy -> class -> {tested, passed}."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for strategy, frame in candidates.items():
        if frame is None or frame.empty or "class" not in frame:
            out[strategy] = {}
            continue
        passed = frame["passed"] if "passed" in frame else pd.Series(False, index=frame.index)
        out[strategy] = {str(cls): {"tested": int(len(part)), "passed": int(passed.loc[part.index].sum())}
                         for cls, part in frame.groupby("class")}
    return out


def append(run: RunDir, *, settings: dict[str, Any], analysed: list[str], reused: list[str],
           candidates: dict[str, pd.DataFrame], error_rate: list[dict[str, Any]], differs_from_run: bool) -> dict:
    """Append one entry (flushed and synced: a crash after it leaves a complete line) and return it."""
    previous = read(run)
    entry = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "release": __version__,
             "settings": settings, "gates": {k: settings.get(k) for k in GATE_KEYS},
             "changed_since_previous": changed(previous[-1]["settings"] if previous else None, settings),
             "settings_differ_from_run": differs_from_run, "analysed": analysed, "reused": reused,
             "counts": counts(candidates), "error_rate": error_rate}
    path = path_of(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return entry

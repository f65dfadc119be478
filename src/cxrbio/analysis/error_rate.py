"""One error rate across the analysis: the confirmation gate over every (strategy, class) family at once.

Each strategy and class is a family of tested features (``top_k`` per held-out fold). A BH per
family, as the confirmation computes (``q``), lets the expected number of false discoveries grow
with the number of families (the paper's configuration has 8 x 7 = 56). After every strategy is
analysed, the features' p-values enter one Benjamini-Bogomolov hierarchy
(:func:`cxrbio.evaluation.multiple_testing.benjamini_bogomolov`): families are selected by their Simes p, and
features within a selected family at the level scaled by the share of families selected.

What enters it is fixed in config before the analysis:

* ``analysis.error_rate_contrasts``: ``both`` (default) uses the larger of the primary
  (against the controls) and the secondary (against the rest) p-value, so a candidate marks its
  class on both counts; ``primary`` uses the primary contrast's p alone.
* ``analysis.primary_strategy``: when set, that strategy's families form the *confirmatory*
  hierarchy and the other strategies a second, *exploratory* one (both are still corrected);
  unset, every analysed strategy is one hierarchy.

The radiomics space keeps its own per-class BH (it is a baseline, not a candidate source).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cxrbio.analysis.confirmation import settle
from cxrbio.evaluation.multiple_testing import benjamini_bogomolov

CONFIRMATORY, EXPLORATORY, EVERY_STRATEGY = "confirmatory", "exploratory", "every strategy"


def joint_p(frame: pd.DataFrame, contrasts: str) -> np.ndarray:
    """The p-value a feature enters the hierarchy with (see the module docstring)."""
    p = frame["p"].to_numpy(float)
    if contrasts == "primary" or "p_rest" not in frame:
        return p
    rest = frame["p_rest"].to_numpy(float)
    return np.where(np.isfinite(rest), np.fmax(p, rest), p)


def scope_of(strategy: str, primary: str | None) -> str:
    if primary is None:
        return EVERY_STRATEGY
    return CONFIRMATORY if strategy == primary else EXPLORATORY


def across_families(candidates: dict[str, pd.DataFrame], settings: Any) -> tuple[dict[str, pd.DataFrame], list[dict]]:
    """Every strategy's candidates with ``p_joint``, ``q_hier`` (the hierarchy's adjusted value), its scope,
    ``gate_confirmation`` from ``q_hier < gate_q`` and the verdict settled again; and one summary row per scope.
    """
    primary = getattr(settings, "primary_strategy", None)
    contrasts = getattr(settings, "error_rate_contrasts", "both")
    out = {name: frame.copy() for name, frame in candidates.items()}
    summaries = []
    for scope in dict.fromkeys(scope_of(name, primary) for name in out):
        names = [name for name in out if scope_of(name, primary) == scope and not out[name].empty]
        if not names:
            continue
        p = np.concatenate([joint_p(out[name], contrasts) for name in names])
        families = np.concatenate([(name + " / " + out[name]["class"].astype(str)).to_numpy() for name in names])
        adjusted, counts = benjamini_bogomolov(p, families.tolist(), level=settings.gate_q)
        start = 0
        for name in names:
            frame = out[name]
            end = start + len(frame)
            frame["p_joint"] = p[start:end]
            frame["q_hier"] = adjusted[start:end]
            frame["error_rate_scope"] = scope
            frame["gate_confirmation"] = frame["q_hier"] < settings.gate_q
            out[name] = settle(frame)
            start = end
        summaries.append({"scope": scope, "strategies": names, "contrasts": contrasts, "level": settings.gate_q, **counts})
    return out, summaries

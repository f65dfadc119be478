"""Interleaved, repeated comparisons: the median ratio of several baseline/variant pairs and its range.

This machine's speed drifts within a minute (the same bare baseline moved between 81 and 124 img/s
in three runs), so one baseline followed by one variant can show a ratio anywhere from 0.6 to 1.2.
Each pair here runs the two back to back, alternating which goes first, and the figure is the
median of the pairs' ratios with its range: drift that is slower than a pair cancels within it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class PairedTimes:
    """Seconds of the baseline and of the variant in each pair, in the order the pairs ran."""

    baseline: list[float]
    variant: list[float]

    @property
    def ratios(self) -> list[float]:
        """Baseline seconds over variant seconds per pair: above 1 means the variant is faster."""
        return [b / v for b, v in zip(self.baseline, self.variant, strict=True)]

    def describe(self, what: str = "baseline time / variant time") -> str:
        ratios = self.ratios
        return (f"{what}: median {statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f} "
                f"over {len(ratios)} interleaved pairs: {', '.join(f'{r:.2f}' for r in ratios)})")


def timed(work: Callable[[], object]) -> float:
    """Wall seconds of ``work()``, or the seconds it returns itself (a float) when only part of it counts."""
    started = time.perf_counter()
    measured = work()
    return measured if isinstance(measured, float) else time.perf_counter() - started


def interleaved(baseline: Callable[[], object], variant: Callable[[], object], *, pairs: int = 3,
                progress: Callable[[str], None] = print) -> PairedTimes:
    """Run ``pairs`` baseline/variant pairs, the variant first in every other pair; return their seconds."""
    if pairs < 1:
        raise ValueError("pairs must be at least 1")
    base: list[float] = []
    var: list[float] = []
    for k in range(pairs):
        if k % 2:
            var.append(timed(variant))
            base.append(timed(baseline))
        else:
            base.append(timed(baseline))
            var.append(timed(variant))
        progress(f"pair {k + 1}/{pairs}: baseline {base[-1]:.1f} s, variant {var[-1]:.1f} s, ratio {base[-1] / var[-1]:.2f}")
    return PairedTimes(base, var)


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description="A helper of the benchmarks (interleaved pairs); nothing to run.").parse_args()

"""Analyses of a run: attribution, statistics, association, stability, projection, shortcut audit, ranking."""

"""Print the study's Tables 1-7 from a run directory, beside the published numbers.

    uv run python analyses/paper_tables.py RUN_DIR

Reads metrics/<strategy>.json (written by ``cxrbio train``). Beside the paper's numbers: our mean
over folds (the paper's definition of its figures) with SD and range over folds, and below it
the pooled out-of-fold figure with its 95% patient-bootstrap interval. The paper's are from its
10-fold cross-validation on 3,905 images and come without an SD. Confusion matrices are shown
as the paper prints them: rows predicted, columns actual. Table 2's published matrix is garbled
in the text we have, so only ours is shown. The published numbers live in
``cxrbio.evaluation.paper`` (the HTML report shows the same tables).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cxrbio.evaluation.paper import PAPER_CLASSES, PUBLISHED_BINARY, PUBLISHED_METRICS, PUBLISHED_TABLE_6


def _pct(value: float | None) -> str:
    return "-" if value is None or value != value else f"{100 * value:.2f}"


def _published(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


#: (summary key, pooled section, pooled field) of the four columns of Tables 1, 4 and 5.
COLUMNS = (("binary_accuracy", "binary", "accuracy"), ("accuracy", None, "accuracy"),
           ("sensitivity", "binary", "sensitivity"), ("specificity", "binary", "specificity"))


def ours(m: dict, key: str, section: str | None, field: str) -> str:
    """'87.12 ± 1.30 (85.02-89.44)' over folds, then 'pooled 87.66 [86.60, 88.70]' on a second line."""
    mean, sd = m.get("fold_mean", {}).get(key), m.get("fold_sd", {}).get(key)
    low, high = m.get("fold_range", {}).get(key, [None, None])
    value = (m["pooled"].get(section, {}) if section else m["pooled"]).get(field)
    ci = m.get("ci95", {}).get(key, [None, None])
    first = _pct(mean) + (f" ± {_pct(sd)}" if sd is not None and sd == sd else "")
    if low is not None and low == low:
        first += f" ({_pct(low)}-{_pct(high)})"
    second = f"pooled {_pct(value)}" + (f" [{_pct(ci[0])}, {_pct(ci[1])}]" if ci[0] is not None and ci[0] == ci[0] else "")
    return f"{first}\n{second}"


def load_metrics(run_dir: Path) -> dict[str, dict]:
    from cxrbio.run.rundir import RunDir

    run = RunDir(run_dir)
    comparison = run.path("comparison")
    return {path.stem: json.loads(path.read_text()) for path in run.glob("metrics") if path != comparison}


def metrics_table(title: str, strategies: list[str], metrics: dict[str, dict]) -> Table:
    table = Table(title=title + " (ours: fold mean ± SD (range over folds), then pooled [95% patient-bootstrap CI])",
                  title_justify="left", show_lines=True)
    table.add_column("strategy", style="bold")
    for column in ("2-class acc %", "7-class acc %", "sensitivity %", "specificity %"):
        table.add_column(f"{column} (ours)", justify="right")
        table.add_column("(paper)", justify="right", style="dim")
    for name in strategies:
        m = metrics.get(name)
        published = PUBLISHED_METRICS.get(name, (None,) * 4)
        if m is None or m.get("status") != "done":
            reason = "not run" if m is None else f"skipped: {m.get('reason', '')[:40]}"
            table.add_row(name, reason, _published(published[0]), "", _published(published[1]), "",
                          _published(published[2]), "", _published(published[3]))
            continue
        cells = []
        for (key, section, field), theirs in zip(COLUMNS, published):
            cells += [ours(m, key, section, field), _published(theirs)]
        table.add_row(name, *cells)
    return table


def confusion_table(title: str, m: dict, published: list[list[int]] | None) -> Table:
    classes = m["classes"]
    confusion = m["pooled"]["confusion"]  # rows true, columns predicted
    table = Table(title=title + " (rows predicted, columns actual; paper in brackets)", title_justify="left")
    table.add_column("predicted \\ actual", style="bold")
    for name in classes:
        table.add_column(name, justify="right")
    for p, name in enumerate(classes):
        cells = []
        for a in range(len(classes)):
            ours = confusion[a][p]
            cells.append(f"{ours} [{published[p][a]}]" if published else str(ours))
        table.add_row(name, *cells)
    return table


def binary_table(title: str, m: dict, published: tuple[int, int, int, int] | None) -> Table:
    b = m["pooled"]["binary"]
    positive = m["positive_class"]
    table = Table(title=title + " (paper in brackets)", title_justify="left")
    table.add_column("", style="bold")
    table.add_column(f"actual {positive}", justify="right")
    table.add_column(f"actual non-{positive}", justify="right")
    tp, fp, fn, tn = published if published else (None,) * 4

    def cell(ours: int, theirs: int | None) -> str:
        return f"{ours} [{theirs}]" if theirs is not None else str(ours)

    table.add_row(f"predicted {positive}", cell(b["tp"], tp), cell(b["fp"], fp))
    table.add_row(f"predicted non-{positive}", cell(b["fn"], fn), cell(b["tn"], tn))
    return table


def print_tables(run_dir: Path, console: Console) -> None:
    metrics = load_metrics(run_dir)
    if not metrics:
        console.print(f"{run_dir} has no metrics/*.json; run 'cxrbio train {run_dir}' first.")
        raise SystemExit(2)
    done = {k: v for k, v in metrics.items() if v.get("status") == "done"}
    console.print(metrics_table("Table 1. Off-the-shelf features", ["offshelf"], metrics))
    if "offshelf" in done:
        console.print(confusion_table("Table 2. 7-class confusion, off-the-shelf", done["offshelf"], None))
        if "binary" in done["offshelf"]["pooled"]:
            console.print(binary_table("Table 3. 2-class confusion, off-the-shelf", done["offshelf"], PUBLISHED_BINARY["offshelf"]))
    finetunes = sorted({*metrics, *[k for k in PUBLISHED_METRICS if k.startswith("finetune-")]} - {"offshelf", "scratch"},
                       key=lambda s: int(s.split("-")[1]) if s.startswith("finetune-") else 99)
    console.print(metrics_table("Table 4. Fine-tuning the top N blocks", finetunes, metrics))
    console.print(metrics_table("Table 5. Training from scratch", ["scratch"], metrics))
    if "scratch" in done:
        seven = tuple(done["scratch"]["classes"]) == PAPER_CLASSES
        console.print(confusion_table("Table 6. 7-class confusion, from scratch", done["scratch"], PUBLISHED_TABLE_6 if seven else None))
        if "binary" in done["scratch"]["pooled"]:
            console.print(binary_table("Table 7. 2-class confusion, from scratch", done["scratch"], PUBLISHED_BINARY["scratch"]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory trained with 'cxrbio train'")
    args = parser.parse_args(argv)
    print_tables(args.run_dir, Console(width=200))


if __name__ == "__main__":
    main()

"""The ``cxrbio`` command. Each sub-command is a thin shell over one stage's module.

Errors the user can fix (:class:`cxrbio.errors.CxrbioError`) are printed as one line
plus a fix, exit status 2; Ctrl-C exits 130 and keeps every finished file.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cxrbio import __version__
from cxrbio.console import console, err_console, frame_table
from cxrbio.errors import CxrbioError

app = typer.Typer(
    name="cxrbio",
    help="Candidate image biomarkers of lung disease in chest X-rays.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Data: generate the phantom, scan a data set into a manifest.", no_args_is_help=True)
app.add_typer(data_app, name="data")

F = TypeVar("F", bound=Callable[..., Any])



def user_errors(command: F) -> F:
    """Turn CxrbioError into a clear message and exit status 2; Ctrl-C into status 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CxrbioError as error:
            err_console.print(f"[bold red]error:[/] {error.message}", soft_wrap=True)
            if error.fix:
                err_console.print(f"[bold]fix:[/] {error.fix}", soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: files already written are complete and kept.")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )


def _version(value: bool) -> None:
    if value:
        console.print(f"cxrbio {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """cxrbio reproduces Apostolopoulos et al. (2020) and looks for biomarkers behind it."""


def _load(config: Path | None, folds: int | None, size: int | None) -> Any:
    from cxrbio.config import load_config

    overrides: dict[str, Any] = {}
    if folds is not None:
        overrides["folds.k"] = folds
    if size is not None:
        overrides["data.image_size"] = size
    return load_config(config, overrides)


@data_app.command("phantom")
@user_errors
def data_phantom(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the phantom data set into.")],
    per_class: Annotated[int, typer.Option("--per-class", help="Images per class.")] = 40,
    size: Annotated[int, typer.Option("--size", help="Image height in px (width varies 82-100%).")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same images.")] = 0,
    shortcut: Annotated[
        str | None, typer.Option("--shortcut", help="CLASS:FRACTION -- stamp a marker outside the lungs on that share of one class.")
    ] = None,
) -> None:
    """Generate phantom chest X-rays with planted findings and their ground-truth masks."""
    from cxrbio.data.phantom import generate_phantom, parse_shortcut

    target = parse_shortcut(shortcut)
    with progress_bar() as bar:
        task = bar.add_task("phantom", total=per_class * 7)
        manifest = generate_phantom(
            out, per_class=per_class, size=size, seed=seed, shortcut=target,
            progress=lambda done, total: bar.update(task, completed=done),
        )
    counts = manifest.groupby("label").agg(images=("path", "size"), patients=("patient_id", "nunique"),
                                            shortcut=("shortcut", "sum"))
    console.print(frame_table(counts, f"Phantom data set in {out}", "class"))
    console.print(f"Ground truth: {out}/manifest.csv, {out}/findings.csv, {out}/masks/ (format: docs/data.md)")


@data_app.command("scan")
@user_errors
def data_scan(
    data: Annotated[Path, typer.Argument(help="Folder of class sub-folders, a CSV (path,label,...), Data_Entry_2017.csv or metadata.csv.")],
    out: Annotated[Path, typer.Option("--out", help="Run directory to write manifest.parquet and config.yaml into.")],
    config: Annotated[Path | None, typer.Option("--config", help="YAML config (default: the study's protocol).")] = None,
    folds: Annotated[int | None, typer.Option("--folds", help="Number of folds (overrides folds.k).")] = None,
    size: Annotated[int | None, typer.Option("--size", help="Letterbox size (overrides data.image_size).")] = None,
    layout: Annotated[str | None, typer.Option("--layout", help="Force a layout: folders, csv, nih, covid.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Decoding processes (default: all cores).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the manifest of a run that has trained models.")] = False,
) -> None:
    """Scan a data set: labels, patients, QC, duplicates and folds into RUN_DIR/manifest.parquet."""
    cfg = _load(config, folds, size)
    result = _scan_with_progress(data, cfg, out, layout, workers, force)
    if result.fold_error is not None:
        raise result.fold_error


def _scan_with_progress(data: Path, cfg: Any, out: Path, layout: str | None, workers: int | None, force: bool) -> Any:
    from cxrbio.data.scan import scan

    started = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task("scan", total=None)
        result = scan(data, cfg, out, layout=layout, workers=workers, force=force,
                      progress=lambda done, total: bar.update(task, completed=done, total=total))
    print_scan_summary(result, cfg, out, time.perf_counter() - started)
    return result


def print_scan_summary(result: Any, cfg: Any, out: Path, seconds: float) -> None:
    from cxrbio.data.summary import summarize

    summary = summarize(result.manifest, cfg.data.classes)
    console.print(f"[bold]Scanned[/] {len(result.manifest)} images (layout: {result.layout}) in {seconds:.1f} s")
    console.print(frame_table(summary.per_class, "Images and patients per class", "class"))
    console.print(frame_table(summary.per_source, "Images per source and class", "source"))
    if not summary.exclusions.empty:
        shown = summary.exclusions.head(15)
        table = frame_table(shown.set_index("path"), f"QC exclusions ({len(summary.exclusions)})", "file")
        console.print(table)
    else:
        console.print("QC exclusions: none")
    dup_lines = ", ".join(f"{name}: {value}" for name, value in summary.duplicates.items())
    console.print(f"Duplicates -- {dup_lines}")
    for note in [*result.notes, *summary.confounding]:
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    if summary.folds is not None:
        console.print(frame_table(summary.folds, f"Images per fold ({cfg.folds.k} folds, patient-grouped)", "fold"))
    console.print(f"Manifest: {out / 'manifest.parquet'}")


@app.command("demo")
@user_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Run directory of the demo.")] = Path("runs/demo"),
    config: Annotated[Path | None, typer.Option("--config", help="Config (default: configs/demo.yaml).")] = None,
    per_class: Annotated[int | None, typer.Option("--per-class", help="Phantom images per class (default from config).")] = None,
) -> None:
    """Run the pipeline on the built-in phantom data: generate, scan (later stages follow as they land)."""
    from cxrbio.config import bundled_config, load_config
    from cxrbio.data.phantom import generate_phantom

    cfg = load_config(config or bundled_config("demo.yaml"))
    phantom_dir = out / "phantom"
    n = per_class or 40
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task("phantom", total=n * len(cfg.data.classes))
        generate_phantom(phantom_dir, per_class=n, size=max(cfg.data.image_size, 96), seed=cfg.folds.seed,
                         progress=lambda done, total: bar.update(task, completed=done))
    timings["phantom"] = time.perf_counter() - started
    started = time.perf_counter()
    result = _scan_with_progress(phantom_dir, cfg, out, None, None, True)
    timings["scan"] = time.perf_counter() - started
    if result.fold_error is not None:
        raise result.fold_error
    console.print("Stage times: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    console.print("Training, embeddings, radiomics, analysis and the report are not implemented yet; "
                  "the demo runs every stage that exists.")


def run() -> None:
    app()


if __name__ == "__main__":
    run()

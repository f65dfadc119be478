"""The ``cxrbio`` command. Each sub-command is a thin shell over one stage's module.

Errors the user can fix (:class:`cxrbio.errors.CxrbioError`) are printed as one line
plus a fix, exit status 2; Ctrl-C exits 130 and keeps every finished file.
"""

from __future__ import annotations

import errno
import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter hides our output

from cxrbio import __version__
from cxrbio.console import console, err_console, frame_table
from cxrbio.errors import CxrbioError
from cxrbio.timing import timed

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
            err_console.print("[yellow]interrupted[/]: files already written are complete and kept; "
                              "run the same command again to resume.")
            raise typer.Exit(130) from None
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            err_console.print(f"[bold red]error:[/] disk full while writing {error.filename or 'a result'}.", soft_wrap=True)
            err_console.print("[bold]fix:[/] free space, then run the same command again: finished work is kept "
                              "and the run resumes from its last complete checkpoint.", soft_wrap=True)
            raise typer.Exit(2) from None

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


def _csv_list(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


@app.command("train")
@user_errors
def train(
    out: Annotated[Path, typer.Option("--out", help="Run directory.")],
    config: Annotated[Path | None, typer.Option("--config", help="YAML config (default: the study's protocol).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Data folder, CSV or manifest.parquet; scanned unless the run has a manifest.")] = None,
    strategies: Annotated[str | None, typer.Option("--strategies", help="Comma-separated, e.g. scratch,offshelf,finetune-3.")] = None,
    folds: Annotated[str | None, typer.Option("--folds", help="Comma-separated fold numbers to train (default: all).")] = None,
    executor: Annotated[str, typer.Option("--executor", help="inprocess or ray.")] = "inprocess",
    address: Annotated[str | None, typer.Option("--address", help="Ray: 'auto', 'ray://host:port', or omitted for a local instance.")] = None,
    gpus_per_task: Annotated[float, typer.Option("--gpus-per-task", help="Ray: GPUs each fold declares.")] = 0.0,
    skip_unavailable: Annotated[bool, typer.Option("--skip-unavailable", help="Mark strategies whose pretrained weights are unreachable as skipped.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Start over in a run directory holding results of another config (old results are moved aside).")] = False,
) -> None:
    """Train MobileNetV2 with each strategy under cross-validation; write models, predictions and metrics."""
    from cxrbio.config import load_config

    cfg = load_config(config)
    run_training(cfg, out, data, _csv_list(strategies), _csv_list(folds), executor, address, gpus_per_task,
                 skip_unavailable, force)


def run_training(cfg: Any, out: Path, data: Path | None, strategies: list[str] | None, folds: list[str] | None,
                 executor: str, address: str | None, gpus_per_task: float, skip_unavailable: bool, force: bool) -> dict[str, Any]:
    from cxrbio import experiment
    from cxrbio.errors import CxrbioError
    from cxrbio.executors import InProcessExecutor, RayExecutor
    from cxrbio.rundir import RunDir
    from cxrbio.train import configure_tensorflow, load_training_data

    from cxrbio.quiet import initialise_tensorflow

    initialise_tensorflow()  # before anything imports it: keeps its C++ start-up notices off the screen
    run = RunDir(out)
    names = experiment.resolve_strategies(cfg, strategies)
    if executor not in ("inprocess", "ray"):
        raise CxrbioError(f"unknown executor {executor!r}.", fix="use --executor inprocess or --executor ray.")
    experiment.check_run_config(run, cfg, force)
    if not run.manifest.is_file():
        if data is None:
            raise CxrbioError(f"{run.root} has no manifest and no --data was given.", fix="pass --data DATA (a folder or CSV).")
        if data.suffix == ".parquet":
            import shutil

            run.root.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(data, run.manifest)
        else:
            result = _scan_with_progress(data, cfg, out, None, None, force)
            if result.fold_error is not None:
                raise result.fold_error
    elif data is not None:
        console.print(f"Using the manifest already in {run.root} (re-scan with 'cxrbio data scan --force' to refresh).")
    skipped = experiment.check_weights(cfg, names, skip_unavailable)
    for name, reason in skipped.items():
        experiment.mark_skipped(run, name, reason)
        console.print(f"[yellow]skipped[/] {name}: {reason}", soft_wrap=True)
    active = [n for n in names if n not in skipped]
    for name in active:  # weights that were missing before may be here now
        (run.root / "train" / name / "SKIPPED").unlink(missing_ok=True)
    configure_tensorflow(cfg)
    with progress_bar() as bar:
        task = bar.add_task("decode + letterbox", total=None)
        # Ray tasks read the letterboxed images from the run's disk cache, built here once.
        data_for_run = load_training_data(run, cfg, cache="disk" if executor == "ray" else None,
                                          progress=lambda d, t: bar.update(task, completed=d, total=t))
    if folds and not all(f.lstrip("-").isdigit() for f in folds):
        raise CxrbioError(f"--folds takes fold numbers separated by commas, got {','.join(folds)!r}.", fix="e.g. --folds 0,2")
    wanted = {int(f) for f in folds} if folds else {f.fold for f in data_for_run.folds}
    unknown = wanted - {f.fold for f in data_for_run.folds}
    if unknown:
        raise CxrbioError(f"no fold(s) {sorted(unknown)}; this run has folds {[f.fold for f in data_for_run.folds]}.")
    jobs = [(s, f.fold) for s in active for f in data_for_run.folds
            if f.fold in wanted and not (run.train_fold(s, f.fold) / "DONE").is_file()]
    done_before = sum(1 for s in active for f in data_for_run.folds if f.fold in wanted) - len(jobs)
    if done_before:
        console.print(f"{done_before} fold(s) already finished: skipped (resuming).")
    runner = RayExecutor(address, gpus_per_task=gpus_per_task) if executor == "ray" else InProcessExecutor()
    started = time.perf_counter()
    with progress_bar() as bar:
        overall = bar.add_task("folds", total=len(jobs))
        epochs_task = bar.add_task("epochs", total=cfg.train.epochs, visible=executor == "inprocess")

        def on_epoch(strategy: str, fold: int, epoch: int, epochs: int, logs: dict[str, float]) -> None:
            bar.update(epochs_task, completed=epoch + 1, total=epochs, description=(
                f"{strategy} fold {fold} epoch {epoch + 1}/{epochs} loss {logs.get('loss', 0):.3f} "
                f"acc {logs.get('accuracy', 0):.3f} val_acc {logs.get('val_accuracy', 0):.3f} "
                f"({logs.get('images_per_second', 0):.0f} img/s)"))

        def on_fold_done(strategy: str, fold: int, status: str) -> None:
            bar.advance(overall)
            console.print(f"{strategy} fold {fold}: {status}")

        runner.run(jobs, str(run.root), cfg, data_for_run, on_epoch, on_fold_done)
    results = {}
    for name in active:
        if experiment.strategy_complete(run, name, data_for_run):
            results[name] = experiment.write_strategy_metrics(run, cfg, name, data_for_run)
    if len(results) > 1:
        experiment.write_comparison(run, data_for_run, active)
    print_metrics_table(results, cfg, time.perf_counter() - started)
    return results


def load_run_config(run_dir: Path) -> Any:
    """The config a run was made with (its config.yaml), or a clear error for a non-run folder."""
    from cxrbio.rundir import open_run

    return open_run(run_dir)[1]


@app.command("embed")
@user_errors
def embed(
    run_dir: Annotated[Path, typer.Argument(help="Run directory with trained models.")],
    strategies: Annotated[str | None, typer.Option("--strategies", help="Comma-separated (default: every trained strategy).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Images per forward pass (default: train.batch_size).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rewrite embeddings that are up to date.")] = False,
) -> None:
    """Export each fold model's global-average-pooling embedding of every image (out-of-fold rows marked)."""
    cfg = load_run_config(run_dir)
    run_embed(run_dir, cfg, _csv_list(strategies), batch_size, force)


def run_embed(run_dir: Path, cfg: Any, strategies: list[str] | None, batch_size: int | None, force: bool) -> Any:
    from cxrbio.embed import embed_run
    from cxrbio.quiet import initialise_tensorflow
    from cxrbio.rundir import RunDir

    initialise_tensorflow()
    run = RunDir(run_dir)
    started = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task("embed", total=None)

        def progress(strategy: str, fold: int, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"{strategy} fold {fold}")

        def on_fold(strategy: str, fold: int, status: str) -> None:
            console.print(f"{strategy} fold {fold}: {status}")

        summary = embed_run(run, cfg, strategies, batch_size, force, progress=progress, on_fold=on_fold)
    for strategy, reason in summary.skipped_strategies.items():
        console.print(f"[yellow]{strategy} was skipped in training[/]: {reason}", soft_wrap=True)
    for strategy, folds in summary.missing_folds.items():
        console.print(f"[yellow]{strategy}: folds {folds} are not trained[/]; its out-of-fold set is incomplete "
                      f"(run 'cxrbio train --out {run_dir} --strategies {strategy}').", soft_wrap=True)
    for strategy, dims in summary.dims.items():
        console.print(f"{strategy}: {summary.images} images x {dims} dims, one out-of-fold row each "
                      f"-> {run.root / 'embeddings' / strategy}")
    console.print(f"Embeddings done in {time.perf_counter() - started:.1f} s.")
    return summary


def run_masks(run_dir: Path, cfg: Any, folder: Path | None, source: str | None, force: bool,
              workers: int | None = None) -> Any:
    """Make the run's lung masks with a progress bar and print where they came from."""
    from cxrbio.masks import make_masks
    from cxrbio.rundir import RunDir

    started = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task("lung masks", total=None)
        masks = make_masks(RunDir(run_dir), cfg, str(folder) if folder else None, source, workers, force,
                           progress=lambda done, total: bar.update(task, completed=done, total=total))
    counts = masks["mask_source"].value_counts()
    console.print("Lung masks: " + ", ".join(f"{source} {n}" for source, n in counts.items())
                  + f" ({time.perf_counter() - started:.1f} s) -> {Path(run_dir) / 'masks'}")
    flagged = masks[masks["mask_source"].isin(["content", "none"])]
    for row in flagged.head(10).itertuples():
        console.print(f"  {row.mask_source}: {row.path}: {row.mask_note}", soft_wrap=True, markup=False)
    if len(flagged) > 10:
        console.print(f"  ... and {len(flagged) - 10} more (manifest columns mask_source, mask_note).")
    return masks


@app.command("masks")
@user_errors
def masks_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory (scanned).")],
    masks: Annotated[Path | None, typer.Option("--masks", help="Folder of your lung masks, named like the images.")] = None,
    source: Annotated[str | None, typer.Option("--source", help="auto, folder, column, segment or content (default: masks.source).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Redo masks that exist.")] = False,
) -> None:
    """Lung-field masks for every image: yours, the data set's, or the built-in segmentation (with QC)."""
    cfg = load_run_config(run_dir)
    if source is not None and source not in ("auto", "folder", "column", "segment", "content"):
        raise CxrbioError(f"unknown mask source {source!r}.", fix="use auto, folder, column, segment or content.")
    run_masks(run_dir, cfg, masks, source, force)


@app.command("radiomics")
@user_errors
def radiomics_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory (scanned).")],
    executor: Annotated[str, typer.Option("--executor", help="local (processes on this machine) or ray.")] = "local",
    address: Annotated[str | None, typer.Option("--address", help="Ray: 'auto', 'ray://host:port', or omitted for a local instance.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Local worker processes (default: all cores).")] = None,
    masks: Annotated[Path | None, typer.Option("--masks", help="Folder of your lung masks (when masks are not made yet).")] = None,
) -> None:
    """pyradiomics features of every image inside its lung mask (2-D, cached, parallel)."""
    cfg = load_run_config(run_dir)
    if executor not in ("local", "ray"):
        raise CxrbioError(f"unknown executor {executor!r}.", fix="use --executor local or --executor ray.")
    run_radiomics(run_dir, cfg, executor, address, workers, masks)


def run_radiomics(run_dir: Path, cfg: Any, executor: str = "local", address: str | None = None,
                  workers: int | None = None, masks: Path | None = None) -> Any:
    from cxrbio.radiomics import STATUS_OK, extract_run, params_path
    from cxrbio.rundir import RunDir

    run = RunDir(run_dir)
    params_path(cfg)  # a bad parameter file fails before any work
    if masks is not None or "mask_source" not in run.read_manifest():
        run_masks(run_dir, cfg, masks, None, False, workers)
    with progress_bar() as bar:
        task = bar.add_task("radiomics", total=None)
        result = extract_run(run, cfg, executor, address, workers,
                             progress=lambda done, total: bar.update(task, completed=done, total=total))
    status = result.status
    ok = status["status"] == STATUS_OK
    hits = int((status["cache"] == "hit").sum())
    n_features = result.features.shape[1] - 1 if len(result.features) else 0
    console.print(f"Radiomics: {int(ok.sum())} of {len(status)} images, {n_features} features each "
                  f"({hits} from the cache) in {result.seconds:.1f} s -> {run.radiomics}")
    problems = result.problems
    if len(problems):
        console.print(f"[yellow]{len(problems)} image(s) lack features or have non-finite values[/] "
                      f"(listed in {run.radiomics.parent / 'status.parquet'}):")
        paths = run.read_manifest().set_index("image_id")["path"]
        for row in problems.head(10).itertuples():
            detail = row.message if row.status != STATUS_OK else f"non-finite: {row.nonfinite}"
            console.print(f"  {row.status}: {paths.get(row.image_id, row.image_id)}: {detail}", soft_wrap=True, markup=False)
        if len(problems) > 10:
            console.print(f"  ... and {len(problems) - 10} more.")
    return result


@app.command("analyze")
@user_errors
def analyze_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory with embeddings and radiomics.")],
    strategies: Annotated[str | None, typer.Option("--strategies", help="Comma-separated (default: every embedded strategy).")] = None,
    top: Annotated[int | None, typer.Option("--top", help="Candidate dims per fold and class (default: analysis.top_k).")] = None,
    no_audit: Annotated[bool, typer.Option("--no-audit", help="Skip the saliency audit and the lungs-blanked test.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Redo analyses whose inputs are unchanged.")] = False,
) -> None:
    """Rank candidate biomarker dims per disease: SHAP, tests, radiomics association, stability, UMAP, shortcut audit."""
    cfg = load_run_config(run_dir)
    if top is not None and top < 1:
        raise CxrbioError(f"--top must be at least 1, got {top}.")
    run_analysis(run_dir, cfg, _csv_list(strategies), top, not no_audit, force)


def run_analysis(run_dir: Path, cfg: Any, strategies: list[str] | None, top: int | None, audit: bool, force: bool) -> Any:
    from rich.markup import escape

    from cxrbio.analysis.run import PARTS, analyze_run
    from cxrbio.quiet import initialise_tensorflow
    from cxrbio.rundir import RunDir

    initialise_tensorflow()
    parts = PARTS if audit else tuple(p for p in PARTS if p != "audit")
    started = time.perf_counter()
    with console.status("analysing") as status:
        summary = analyze_run(RunDir(run_dir), cfg, strategies, top, parts, force,
                              say=lambda message: (console.print(message, markup=False), status.update(message)))
    for name in summary.skipped:
        console.print(f"{name}: inputs unchanged since the last analysis, kept (--force redoes it).")
    shown = top or 3
    for name, ranking in summary.candidates.items():
        print_candidates(name, ranking, shown)
    for note in summary.notes[:12]:
        console.print(f"[yellow]note[/] {escape(note)}", soft_wrap=True)
    if len(summary.notes) > 12:
        console.print(f"... {len(summary.notes) - 12} more notes in {Path(run_dir) / 'analysis' / 'summary.json'}")
    parts_time = ", ".join(f"{k} {v:.1f} s" for k, v in summary.timings.items())
    console.print(f"Analysis done in {time.perf_counter() - started:.1f} s ({parts_time}) -> {Path(run_dir) / 'analysis'}")
    return summary


@app.command("report")
@user_errors
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory (any stage done; what is missing is listed in the report).")],
    out: Annotated[Path | None, typer.Option("--out", help="HTML file to write (default: reports/<run name>.html).")] = None,
) -> None:
    """One self-contained HTML report of a run: data, Tables 1-7, candidates per disease, radiomics, limitations."""
    run_report(run_dir, out)


def run_report(run_dir: Path, out: Path | None) -> Any:
    from rich.markup import escape

    from cxrbio.report import build_report

    started = time.perf_counter()
    with console.status("report") as status:
        result = build_report(run_dir, out, progress=lambda section: status.update(f"report: {section}"))
    for item in result.missing:
        console.print(f"[yellow]missing[/] {escape(item.what)}: run '{escape(item.command)}'", soft_wrap=True)
    console.print(f"Report: {result.path} ({result.size_bytes / 1e6:.1f} MB, {time.perf_counter() - started:.1f} s); "
                  "open it in any browser, no network needed.", soft_wrap=True)
    return result


def print_candidates(name: str, ranking: Any, shown: int) -> None:
    """A compact table per space: the top `shown` per disease, short feature names."""
    from rich.table import Table

    from cxrbio.analysis.association import short_name

    if ranking is None or ranking.empty:
        return
    radiomics = name == "radiomics"
    title = "Radiomics features" if radiomics else f"Candidate dims, {name}"
    table = Table(title=f"{title}: top {shown} per disease", title_justify="left")
    columns = (["class", "feature", "SHAP", "dir", "AUC", "q", "boot"] if radiomics else
               ["class", "fold/dim", "SHAP%", "dir", "AUC", "q", "top radiomics descriptor", "lung", "flag"])
    for column in columns:
        table.add_column(column, no_wrap=column in ("fold/dim", "dir", "AUC", "q"))

    def num(value: Any, fmt: str) -> str:
        return "" if value is None or value != value else format(value, fmt)

    for cls, part in ranking.groupby("class", sort=True):
        for item in part.head(shown).to_dict("records"):
            direction = "+" if item["direction"] > 0 else "-"
            if radiomics:
                table.add_row(cls, short_name(item["feature"]), num(item["mean_abs_shap"], ".3f"), direction,
                              num(item["auc"], ".2f"), num(item["q"], ".0e"), num(item.get("effect_top_frequency"), ".2f"))
            else:
                descriptor = item["descriptors"].split("; ")[0] if item.get("descriptors") else ""
                if descriptor:
                    feature, _, rho = descriptor.partition(" (")
                    descriptor = f"{short_name(feature)} ({rho}"
                flag = "likely shortcut" if item.get("likely_shortcut") is True else ""
                table.add_row(cls, f"{item['fold']}/{item['dim']}", num(100 * item["shap_share"], ".1f"), direction,
                              num(item["auc"], ".2f"), num(item["q"], ".0e"), descriptor,
                              num(item.get("lung_share"), ".2f"), flag)
    console.print(table)


def print_metrics_table(results: dict[str, Any], cfg: Any, seconds: float) -> None:
    import pandas as pd

    if not results:
        console.print("No strategy has all its folds finished yet.")
        return
    rows = {}
    for name, m in results.items():
        ci = m["ci95"]
        binary = m["pooled"].get("binary", {})

        def fmt(value: float, interval: list[float]) -> str:
            return f"{100 * value:.1f} [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"

        rows[name] = {
            "7-class acc %": fmt(m["pooled"]["accuracy"], ci["accuracy"]),
            "2-class acc %": fmt(binary.get("accuracy", float("nan")), ci["binary_accuracy"]),
            "sensitivity %": fmt(binary.get("sensitivity", float("nan")), ci["sensitivity"]),
            "specificity %": fmt(binary.get("specificity", float("nan")), ci["specificity"]),
            "fold mean ± SD %": f"{100 * m['fold_mean']['accuracy']:.1f} ± {100 * m['fold_sd']['accuracy']:.1f}",
        }
    title = f"Pooled out-of-fold metrics, 95% CI by patient bootstrap ({cfg.data.positive_class} vs rest) -- {seconds:.0f} s"
    console.print(frame_table(pd.DataFrame(rows).T, title, "strategy"))


@app.command("demo")
@user_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Run directory of the demo.")] = Path("runs/demo"),
    config: Annotated[Path | None, typer.Option("--config", help="Config (default: configs/demo.yaml).")] = None,
    per_class: Annotated[int, typer.Option("--per-class", help="Phantom images per class.")] = 100,
    report_out: Annotated[Path | None, typer.Option("--report", help="HTML report (default: reports/<run name>.html).")] = None,
) -> None:
    """The pipeline on the built-in phantom data: generate, scan, train, embed, masks, radiomics, analyze, report."""
    from cxrbio.config import bundled_config, load_config
    from cxrbio.data.phantom import generate_phantom

    cfg = load_config(config or bundled_config("demo.yaml"))
    phantom_dir = out / "phantom"
    timings: dict[str, float] = {}
    size = max(cfg.data.image_size, 64)
    with timed(timings, "phantom"):
        if not _same_phantom(phantom_dir, per_class, size, cfg.folds.seed):
            with progress_bar() as bar:
                task = bar.add_task("phantom", total=per_class * len(cfg.data.classes))
                generate_phantom(phantom_dir, per_class=per_class, size=size, seed=cfg.folds.seed,
                                 progress=lambda done, total: bar.update(task, completed=done))
            (out / "manifest.parquet").unlink(missing_ok=True)  # new images: scan again
    with timed(timings, "scan"):
        if not (out / "manifest.parquet").is_file():
            result = _scan_with_progress(phantom_dir, cfg, out, None, None, True)
            if result.fold_error is not None:
                raise result.fold_error
    with timed(timings, "train"):
        run_training(cfg, out, None, None, None, "inprocess", None, 0.0, skip_unavailable=True, force=True)
    with timed(timings, "embed"):
        run_embed(out, cfg, None, None, False)
    with timed(timings, "masks"):
        run_masks(out, cfg, None, None, False)
    with timed(timings, "radiomics"):
        run_radiomics(out, cfg)
    with timed(timings, "analyze"):
        run_analysis(out, cfg, None, None, True, False)
    with timed(timings, "report"):
        report = run_report(out, report_out)
    console.print("Stage times: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
                  + f"; total {sum(timings.values()):.1f} s")
    console.print(f"Paper tables in the terminal: uv run python analyses/paper_tables.py {out}")
    console.print(f"Analysis tables: {out / 'analysis'} (docs/analysis.md)")
    console.print(f"[bold]The report: {report.path}[/]", soft_wrap=True)


def _same_phantom(folder: Path, per_class: int, size: int, seed: int) -> bool:
    """Whether ``folder`` already holds the phantom these parameters would generate (it is deterministic)."""
    import json

    from cxrbio.data.phantom import PHANTOM_VERSION

    try:
        params = json.loads((folder / "phantom.json").read_text())
    except (OSError, ValueError):
        return False
    return (params.get("version"), params.get("per_class"), params.get("size"), params.get("seed"),
            params.get("shortcut")) == (PHANTOM_VERSION, per_class, size, seed, None)


def run() -> None:
    app()


if __name__ == "__main__":
    run()

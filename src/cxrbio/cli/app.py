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
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter hides our output

from cxrbio import __version__
from cxrbio.cli.console import console, err_console, frame_table
from cxrbio.cli.printers import print_result
from cxrbio.errors import CxrbioError
from cxrbio.run.rundir import RunDir
from cxrbio.runtime.progress import ProgressEvent

GRAMMAR = """Every command takes the run directory (or data folder) as an argument:

  cxrbio data phantom FOLDER
  cxrbio data scan DATA RUN_DIR
  cxrbio train RUN_DIR
  cxrbio embed | masks | radiomics | analyze | lungs-removed | status RUN_DIR
  cxrbio evaluate RUN_DIR --data EXTERNAL
  cxrbio report RUN_DIR [--html FILE]
  cxrbio demo [RUN_DIR]

--force recomputes a stage's outputs although they are up to date, moving the old ones to RUN_DIR/superseded-<time>/. \
--reconfigure (scan, train) adopts a --config that differs from the run's, moving what the changed keys shape aside.

The older forms (--out on phantom, scan, train and demo; report --out FILE; demo --report FILE) still work and print a deprecation line."""

app = typer.Typer(
    name="cxrbio",
    help="Candidate image biomarkers of lung disease in chest X-rays.\n\n" + GRAMMAR,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Data: generate the phantom, scan a data set into a manifest.", no_args_is_help=True)
app.add_typer(data_app, name="data")
config_app = typer.Typer(help="A run's config: show it, or compare two runs' (or files').", no_args_is_help=True)
app.add_typer(config_app, name="config")

F = TypeVar("F", bound=Callable[..., Any])


def deprecated(old: str, new: str) -> None:
    """One line on stderr: the form used still works, and the one to use instead."""
    err_console.print(f"[yellow]deprecated:[/] {old} still works; use {new}", soft_wrap=True)


def run_dir_argument(given: Path | None, old_out: Path | None, command: str, new_form: str, *,
                     default: Path | None = None) -> Path:
    """The run directory from the positional argument, or from the deprecated ``--out`` (said once)."""
    if old_out is not None:
        if given is not None and given != old_out:
            raise CxrbioError(f"two run directories given: {given} and --out {old_out}.",
                              fix=f"give it once, as an argument: {new_form}.")
        deprecated(f"'{command} --out RUN_DIR'", f"'{new_form}'")
        return old_out
    if given is None:
        if default is not None:
            return default
        raise CxrbioError(f"{command} needs the run directory.", fix=f"{new_form}.")
    return given


ForceOption = Annotated[bool, typer.Option(
    "--force", help="Recompute this stage's outputs although they are up to date; the old ones move to "
         "RUN_DIR/superseded-<time>/.")]
ReconfigureOption = Annotated[bool, typer.Option(
    "--reconfigure", help="Adopt a --config that differs from the run's: every result the changed keys shape (and "
         "everything made from those) moves to RUN_DIR/superseded-<time>/ and the run's config.yaml is replaced.")]


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


class ShowProgress:
    """The CLI's side of the progress protocol: a bar per counted task, lines printed as they come."""

    def __init__(self) -> None:
        self.bar = progress_bar()
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> ShowProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)  # type: ignore[arg-type]

    def __call__(self, event: ProgressEvent) -> None:
        if event.is_line:
            console.print(escape(event.message), soft_wrap=True)
            return
        if event.task not in self.tasks:
            self.tasks[event.task] = self.bar.add_task(event.task, total=event.total)
        description = event.message or event.task
        self.bar.update(self.tasks[event.task], completed=event.done or 0, total=event.total,
                        description=escape(description))


def _version(value: bool) -> None:
    if value:
        console.print(f"cxrbio {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """cxrbio reproduces Apostolopoulos et al. (2020) and looks for biomarkers behind it."""
    from cxrbio.cli.console import render_library_logging

    render_library_logging()


def _csv_list(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def _fold_numbers(text: str | None) -> list[int] | None:
    values = _csv_list(text)
    if values and not all(v.lstrip("-").isdigit() for v in values):
        raise CxrbioError(f"--folds takes fold numbers separated by commas, got {text!r}.", fix="e.g. --folds 0,2")
    return [int(v) for v in values] if values else None


def _given_config(path: Path | None) -> Any:
    from cxrbio.config import load_config

    return load_config(path) if path is not None else None


def _executor(kind: str, workers: int | None, address: str | None, gpus_per_task: float = 0.0) -> Any:
    from cxrbio.runtime.executors import make_executor

    return make_executor(kind, workers=workers, address=address, gpus_per_task=gpus_per_task)


ExecutorOption = Annotated[str, typer.Option("--executor", help="local (processes on this machine) or ray.")]
WorkersOption = Annotated[int | None, typer.Option(
    "--workers", help="Local worker processes (default: all cores; train: 1, in this process).")]
AddressOption = Annotated[str | None, typer.Option("--address", help="Ray: 'auto', 'ray://host:port', or omitted for a local instance.")]


@data_app.command("phantom")
@user_errors
def data_phantom(
    folder: Annotated[Path | None, typer.Argument(
        metavar="FOLDER", help="Folder to write the phantom data set into.", show_default=False)] = None,
    per_class: Annotated[int, typer.Option("--per-class", help="Images per class.")] = 40,
    size: Annotated[int, typer.Option("--size", help="Image height in px (width varies 82-100%).")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same images.")] = 0,
    shortcut: Annotated[
        str | None, typer.Option("--shortcut", help="CLASS:FRACTION -- stamp a marker outside the lungs on that share of one class.")
    ] = None,
    site_confound: Annotated[bool, typer.Option(
        "--site-confound", help="Two acquisition sites (frame, export format, exposure, noise, a corner label) whose "
             "share differs by class as in the study's data; 'source' records the site.")] = False,
    null: Annotated[bool, typer.Option(
        "--null", help="No planted findings: every image is drawn as Normal, only the label differs "
             "(with --site-confound the site is the only signal).")] = False,
    severity: Annotated[str, typer.Option(
        "--severity", help="LOW,HIGH: the range of each finding's severity (0.3,1.0 grades the findings within "
             "each disease).")] = "0.7,1.0",
    isolated_site: Annotated[str | None, typer.Option(
        "--isolated-site", help="CLASS: that class entirely at site b, which images no one else (its effect cannot "
             "be told from the site's look: not estimable).")] = None,
    nested_site: Annotated[str | None, typer.Option(
        "--nested-site", help="CLASS: that class entirely at site b, which also images half of the Normal patients "
             "(estimable within site b).")] = None,
    partial_null: Annotated[bool, typer.Option(
        "--partial-null", help="Half the disease classes (chosen by --seed) planted, the others drawn exactly as "
             "Normal: null classes among learnt ones, for calibration (phantom.json names them).")] = False,
    old_out: Annotated[Path | None, typer.Option("--out", hidden=True)] = None,
) -> None:
    """Generate phantom chest X-rays with planted findings and their ground-truth masks.

    With a site design (--site-confound, --isolated-site, --nested-site) the manifest records each image's site,
    and FOLDER/manifest-no-source.csv is the same data without it (scan that CSV to hide the source).

    cxrbio data phantom FOLDER [--per-class N] [--size PX] [--seed S] [--severity LOW,HIGH] ...
    """
    from cxrbio.data.phantom import generate_phantom, parse_severity, parse_shortcut
    from cxrbio.runtime.progress import counter

    if old_out is not None:
        if folder is not None and folder != old_out:
            raise CxrbioError(f"two folders given: {folder} and --out {old_out}.", fix="give it once, as an argument.")
        deprecated("'cxrbio data phantom --out FOLDER'", "'cxrbio data phantom FOLDER'")
    out = folder or old_out
    if out is None:
        raise CxrbioError("cxrbio data phantom needs the folder to write into.", fix="cxrbio data phantom FOLDER.")

    target = parse_shortcut(shortcut)
    with ShowProgress() as show:
        manifest = generate_phantom(out, per_class=per_class, size=size, seed=seed, shortcut=target,
                                    progress=counter(show, "phantom"), site_confound=site_confound, null=null,
                                    severity=parse_severity(severity), isolated_site=isolated_site,
                                    nested_site=nested_site, partial_null=partial_null)
    counts = manifest.groupby("label").agg(images=("path", "size"), patients=("patient_id", "nunique"),
                                            shortcut=("shortcut", "sum"))
    if "site" in manifest:
        counts["site b"] = manifest.groupby("label")["site"].agg(lambda s: int((s == "phantom-site-b").sum()))
    console.print(frame_table(counts, f"Phantom data set in {out}", "class"))
    console.print(f"Ground truth: {out}/manifest.csv, {out}/findings.csv, {out}/masks/ (format: docs/data.md)")
    if partial_null:
        from cxrbio.data.phantom import read_design

        design = read_design(out)["partial_null"]
        planted, nulled = design["planted"], design["null"]
        console.print(f"Partial null: planted {', '.join(planted)}; drawn as Normal (null) {', '.join(nulled)}.")


@data_app.command("scan")
@user_errors
def data_scan(
    data: Annotated[Path, typer.Argument(
        metavar="DATA", help="Folder of class sub-folders, a CSV (path,label,...), Data_Entry_2017.csv or metadata.csv.")],
    run_dir: Annotated[Path | None, typer.Argument(
        metavar="RUN_DIR", help="Run directory to create (or re-scan).", show_default=False)] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML config of a new run (default: the study's protocol).")] = None,
    k: Annotated[int | None, typer.Option("--k", help="Number of folds (overrides folds.k).")] = None,
    size: Annotated[int | None, typer.Option("--size", help="Letterbox size (overrides data.image_size).")] = None,
    layout: Annotated[str | None, typer.Option("--layout", help="Force a layout: folders, csv, nih, covid.")] = None,
    source_from: Annotated[str | None, typer.Option(
        "--source-from", help="Where each image's source comes from: auto, column, subfolder, filename, none "
             "(overrides data.source_from).")] = None,
    executor: ExecutorOption = "local",
    workers: WorkersOption = None,
    address: AddressOption = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Scan again although later stages have results; if the manifest changes, the old one and "
             "every result made from it move to RUN_DIR/superseded-<time>/.")] = False,
    reconfigure: ReconfigureOption = False,
    old_folds: Annotated[str | None, typer.Option("--folds", hidden=True)] = None,
    old_out: Annotated[Path | None, typer.Option("--out", hidden=True)] = None,
) -> None:
    """Scan a data set: labels, patients, QC, duplicates and folds into RUN_DIR/manifest.parquet.

    cxrbio data scan DATA RUN_DIR [--config FILE] [--k K] [--size PX] [--force] [--reconfigure]
    """
    from cxrbio.config import load_config
    from cxrbio.stages import scan

    out = run_dir_argument(run_dir, old_out, "cxrbio data scan DATA", "cxrbio data scan DATA RUN_DIR")
    if old_folds is not None:
        raise CxrbioError("'cxrbio data scan --folds' is now --k (the number of folds); --folds names fold numbers "
                          "in 'cxrbio train'.", fix=f"use --k {old_folds}.")
    overrides: dict[str, Any] = {}
    if k is not None:
        overrides["folds.k"] = k
    if size is not None:
        overrides["data.image_size"] = size
    if source_from is not None:
        overrides["data.source_from"] = source_from
    existing = RunDir(out).config.is_file()
    cfg = load_config(config, overrides) if (config is not None or overrides or not existing) else None
    started = time.perf_counter()
    with ShowProgress() as show:
        result = scan.run(out, data=data, config=cfg, layout=layout, executor=_executor(executor, workers, address),
                          force=force, reconfigure=reconfigure, progress=show)
    print_result(result, run_dir=out, seconds=time.perf_counter() - started)
    if result.superseded is not None:
        console.print(f"[yellow]the manifest changed[/]: earlier results moved to {result.superseded}", soft_wrap=True)
    if result.fold_error is not None:
        raise result.fold_error


@app.command("train")
@user_errors
def train_command(
    run_dir: Annotated[Path | None, typer.Argument(
        metavar="RUN_DIR", help="Run directory (scanned, or new with --data).", show_default=False)] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="YAML config: a new run's; on an existing run it must equal the run's own (or --reconfigure).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Data folder or CSV; scanned when the run has no manifest.")] = None,
    strategies: Annotated[str | None, typer.Option("--strategies", help="Comma-separated, e.g. scratch,offshelf,finetune-3.")] = None,
    folds: Annotated[str | None, typer.Option("--folds", help="Comma-separated fold numbers to train (default: all).")] = None,
    executor: ExecutorOption = "local",
    workers: Annotated[int | None, typer.Option(
        "--workers", help="Folds trained at once in local processes (default: 1, in this process, with per-epoch "
             "progress).")] = None,
    address: AddressOption = None,
    gpus_per_task: Annotated[float, typer.Option("--gpus-per-task", help="Ray: GPUs each fold declares.")] = 0.0,
    skip_unavailable: Annotated[bool, typer.Option(
        "--skip-unavailable", help="Mark strategies whose pretrained weights are unreachable as skipped.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Retrain the chosen folds although they are up to date; the old fold models move to "
             "RUN_DIR/superseded-<time>/ (and the embeddings and analyses made from them go stale).")] = False,
    reconfigure: ReconfigureOption = False,
    old_out: Annotated[Path | None, typer.Option("--out", hidden=True)] = None,
) -> None:
    """Train MobileNetV2 with each strategy under cross-validation; write models, predictions and metrics.

    cxrbio train RUN_DIR [--strategies S,..] [--folds K,..] [--config FILE --reconfigure] [--force]
    """
    from cxrbio.stages import train

    out = run_dir_argument(run_dir, old_out, "cxrbio train", "cxrbio train RUN_DIR")
    runner = _executor(executor, workers if workers is not None else (1 if executor == "local" else None), address, gpus_per_task)
    with ShowProgress() as show:
        result = train.run(out, data=data, config=_given_config(config), strategies=_csv_list(strategies),
                           folds=_fold_numbers(folds), executor=runner, skip_unavailable=skip_unavailable,
                           force=force, reconfigure=reconfigure, progress=show)
    print_result(result, run_dir=out)


@app.command("embed")
@user_errors
def embed_command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory with trained models.")],
    strategies: Annotated[str | None, typer.Option("--strategies", help="Comma-separated (default: every trained strategy).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Images per forward pass (default: train.batch_size).")] = None,
    force: ForceOption = False,
) -> None:
    """Export each fold model's global-average-pooling embedding of every image (out-of-fold rows marked)."""
    from cxrbio.stages import embed

    with ShowProgress() as show:
        summary = embed.run(run_dir, strategies=_csv_list(strategies), batch_size=batch_size, force=force, progress=show)
    print_result(summary, run_dir=run_dir)


@app.command("masks")
@user_errors
def masks_command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory (scanned).")],
    masks: Annotated[Path | None, typer.Option("--masks", help="Folder of your lung masks, named like the images.")] = None,
    source: Annotated[str | None, typer.Option(
        "--source", help="auto, folder, column, segment or content (default: masks.source).")] = None,
    executor: ExecutorOption = "local",
    workers: WorkersOption = None,
    address: AddressOption = None,
    force: ForceOption = False,
) -> None:
    """Lung-field masks for every image: yours, the data set's, or the built-in segmentation (with QC)."""
    from cxrbio.stages import masks as masks_stage

    with ShowProgress() as show:
        result = masks_stage.run(run_dir, folder=masks, source=source, force=force,
                                 executor=_executor(executor, workers, address), progress=show)
    print_result(result, run_dir=run_dir)


@app.command("radiomics")
@user_errors
def radiomics_command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory (scanned).")],
    executor: ExecutorOption = "local",
    workers: WorkersOption = None,
    address: AddressOption = None,
    masks: Annotated[Path | None, typer.Option("--masks", help="Folder of your lung masks (used to make the masks first).")] = None,
    force: ForceOption = False,
) -> None:
    """pyradiomics features of every image inside its lung mask (2-D, cached, parallel)."""
    from cxrbio.stages import radiomics

    with ShowProgress() as show:
        result = radiomics.run(run_dir, executor=_executor(executor, workers, address), masks=masks, force=force,
                               progress=show)
    print_result(result, run_dir=run_dir)


@app.command("analyze")
@user_errors
def analyze_command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory with embeddings and radiomics.")],
    strategies: Annotated[str | None, typer.Option("--strategies", help="Comma-separated (default: every embedded strategy).")] = None,
    top: Annotated[int | None, typer.Option("--top", help="Candidate dims per fold and class (default: analysis.top_k).")] = None,
    no_audit: Annotated[bool, typer.Option("--no-audit", help="Skip the saliency audit and the lungs-blanked test.")] = False,
    config: Annotated[Path | None, typer.Option(
        "--config", help="A config whose analysis/report sections are used (the rest must equal the run's).")] = None,
    force: ForceOption = False,
) -> None:
    """Rank candidate biomarker dims per disease: SHAP, tests, radiomics association, stability, UMAP, shortcut audit."""
    from cxrbio.stages import analyze

    with console.status("analysing") as status:
        def show(event: ProgressEvent) -> None:
            console.print(event.message, markup=False, soft_wrap=True)
            status.update(escape(event.message))

        summary = analyze.run(run_dir, strategies=_csv_list(strategies), top=top, audit=not no_audit,
                              config=_given_config(config), force=force, progress=show)
    print_result(summary, run_dir=run_dir, top=top)


@app.command("lungs-removed")
@user_errors
def lungs_removed_command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory with the strategy trained.")],
    strategies: Annotated[str | None, typer.Option(
        "--strategies", help="Comma-separated strategies to retrain (default: scratch).")] = None,
    force: ForceOption = False,
) -> None:
    """Retrain with the centre of every image blacked out (opt-in, as long as training): is there signal outside the lungs?"""
    from cxrbio.stages import lungs_removed

    with ShowProgress() as show:
        result = lungs_removed.run(run_dir, strategies=_csv_list(strategies), force=force, progress=show)
    print_result(result, run_dir=run_dir)
    console.print(f"Done in {result.seconds:.0f} s -> {RunDir(run_dir).path('lungs_removed', strategy='*').parent}")


@app.command("evaluate")
@user_errors
def evaluate_command(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory with trained strategies.")],
    data: Annotated[Path, typer.Option("--data", help="External data set: a folder or CSV, as for 'cxrbio data scan'.")],
    name: Annotated[str | None, typer.Option("--name", help="Name of the set under RUN/external/ (default: its folder's).")] = None,
    strategies: Annotated[str | None, typer.Option(
        "--strategies", help="Comma-separated (default: every strategy trained on all folds).")] = None,
    layout: Annotated[str | None, typer.Option("--layout", help="Layout of the external data (default: detected).")] = None,
    drop_unknown: Annotated[bool, typer.Option(
        "--drop-unknown", help="Leave out external images whose labels the run never saw (said), instead of failing.")] = False,
) -> None:
    """Apply a run's fold models (each, and their ensemble) to an external data set; metrics and the drop from internal."""
    from cxrbio.stages import evaluate

    with ShowProgress() as show:
        result = evaluate.run(run_dir, data=data, name=name, strategies=_csv_list(strategies), layout=layout,
                              drop_unknown=drop_unknown, progress=show)
    print_result(result, run_dir=run_dir)


@app.command("report")
@user_errors
def report_command(
    run_dir: Annotated[Path, typer.Argument(
        metavar="RUN_DIR", help="Run directory (any stage done; what is missing is listed in the report).")],
    html: Annotated[Path | None, typer.Option("--html", help="HTML file to write (default: reports/<run name>.html).")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="A config whose report section is used (the rest must equal the run's).")] = None,
    thumbnails: Annotated[bool | None, typer.Option(
        "--thumbnails/--no-thumbnails", help="Embed X-ray thumbnails in the saliency gallery (default: "
             "report.thumbnails). --no-thumbnails: no patient pixels in the file (burned-in names and dates cannot "
             "travel with it); every figure is still drawn.", show_default=False)] = None,
    old_out: Annotated[Path | None, typer.Option("--out", hidden=True)] = None,
) -> None:
    """One self-contained HTML report of a run: data, Tables 1-7, candidates per disease, radiomics, limitations.

    cxrbio report RUN_DIR [--html FILE] [--no-thumbnails]
    """
    from cxrbio.stages import report

    if old_out is not None:
        if html is not None and html != old_out:
            raise CxrbioError(f"two report files given: --html {html} and --out {old_out}.", fix="give --html FILE once.")
        deprecated("'cxrbio report RUN_DIR --out FILE'", "'cxrbio report RUN_DIR --html FILE'")
        html = old_out
    out = html
    started = time.perf_counter()
    with ShowProgress() as show:
        result = report.run(run_dir, out=out, config=_given_config(config), thumbnails=thumbnails, progress=show)
    print_result(result, run_dir=run_dir, seconds=time.perf_counter() - started)


@config_app.command("show")
@user_errors
def config_show(run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory.")]) -> None:
    """Print the config a run was made with (its config.yaml) and the history of its changes."""
    from cxrbio.config import config_to_yaml
    from cxrbio.run.rundir import open_run

    run, config = open_run(run_dir)
    console.print(config_to_yaml(config), markup=False, highlight=False, end="")
    for event in run.info().get("history", []):
        details = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("when", "event"))
        console.print(f"# {event.get('when')} {event.get('event')}: {details}", markup=False, soft_wrap=True)


@config_app.command("diff")
@user_errors
def config_diff(
    a: Annotated[Path, typer.Argument(help="A run directory or a config file.")],
    b: Annotated[Path, typer.Argument(help="Another run directory or config file.")],
) -> None:
    """The keys whose values differ between two runs' configs (or config files); exit 1 when any do."""
    from cxrbio.run.runconfig import differences

    changes = differences(_config_of(a), _config_of(b))
    if not changes:
        console.print("The configs are the same.")
        return
    table = frame_table(_diff_frame(changes), f"{len(changes)} key(s) differ", "key")
    console.print(table)
    raise typer.Exit(1)


def _config_of(path: Path) -> Any:
    from cxrbio.config import load_config
    from cxrbio.run.rundir import open_run

    return open_run(path)[1] if path.is_dir() else load_config(path)


def _diff_frame(changes: list[tuple[str, Any, Any]]) -> Any:
    import pandas as pd

    return pd.DataFrame([{"key": k, "first": repr(a), "second": repr(b)} for k, a, b in changes]).set_index("key")


@app.command("status")
@user_errors
def status_command(run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run directory.")]) -> None:
    """Each stage's units: fresh, stale (and why) or missing; what to run next."""
    import pandas as pd

    from cxrbio.report.contents import load_contents

    contents = load_contents(run_dir)
    if contents.units:
        frame = pd.DataFrame([{"unit": u.label, "stage": u.stage, "state": u.state, "why": u.reason} for u in contents.units])
        console.print(frame_table(frame.set_index("unit"), f"{contents.run.root}: {len(frame)} stamped units", "unit"))
    for item in contents.missing:
        console.print(f"[yellow]missing[/] {escape(item.what)}: run '{escape(item.command)}'", soft_wrap=True)


@app.command("demo")
@user_errors
def demo(
    run_dir: Annotated[Path | None, typer.Argument(metavar="RUN_DIR", help="Run directory of the demo [default: runs/demo].",
                                                   show_default=False)] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Config (default: configs/demo.yaml).")] = None,
    per_class: Annotated[int, typer.Option("--per-class", help="Phantom images per class.")] = 100,
    report_out: Annotated[Path | None, typer.Option("--html", help="HTML report (default: reports/<run name>.html).")] = None,
    old_out: Annotated[Path | None, typer.Option("--out", hidden=True)] = None,
    old_report: Annotated[Path | None, typer.Option("--report", hidden=True)] = None,
) -> None:
    """The pipeline on the built-in phantom data: generate, scan, train, embed, masks, radiomics, analyze, report.

    cxrbio demo [RUN_DIR] [--config FILE] [--per-class N] [--html FILE]
    """
    from cxrbio.config import load_config
    from cxrbio.stages import demo as demo_stage

    out = run_dir_argument(run_dir, old_out, "cxrbio demo", "cxrbio demo RUN_DIR", default=Path("runs/demo"))
    if old_report is not None:
        deprecated("'cxrbio demo --report FILE'", "'cxrbio demo --html FILE'")
        report_out = report_out or old_report
    started = time.perf_counter()

    def printed(stage: str, result: Any) -> None:  # each stage's summary, by the result's type
        print_result(result, run_dir=out, seconds=time.perf_counter() - started if stage == "scan" else None)

    with ShowProgress() as show:
        result = demo_stage.run(out, config=load_config(config) if config else None, per_class=per_class,
                                report=report_out, progress=show, on_stage=printed)
    console.print("Stage times: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
                  + f"; total {sum(result.timings.values()):.1f} s")
    console.print(f"Paper tables in the terminal: uv run python analyses/paper_tables.py {out}")
    console.print(f"Analysis tables: {RunDir(out).path('analysis_summary').parent} (docs/analysis.md)")
    console.print(f"[bold]The report: {result.report.path}[/]", soft_wrap=True)


def run() -> None:
    app()


if __name__ == "__main__":
    run()

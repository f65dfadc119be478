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



def print_scan_summary(result: Any, cfg: Any, out: Path, seconds: float) -> None:
    """What the scan found: per class, per source, exclusions, duplicates, folds."""
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
    acquisition = getattr(result, "acquisition", None)
    if acquisition is not None:
        from cxrbio.confounding.acquisition import describe

        colour = "yellow" if acquisition.flagged else "default"
        label = "confounding warning:" if acquisition.flagged else "acquisition:"
        console.print(f"[{colour}]{label}[/] {describe(acquisition)}", soft_wrap=True)
    design = getattr(result, "design", None)
    if design is not None and not design.empty:
        print_design(design, getattr(result, "design_notes", []))
    covariates = getattr(result, "covariates", None)
    if covariates is not None:
        for row in covariates.significant:
            console.print(f"[yellow]covariate:[/] {row['covariate']} differs by class ({row['test']}, q = {row['q']:.2g}): "
                          f"{row['sentence']}", soft_wrap=True)
        for note in covariates.notes:
            console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    console.print(f"Manifest: {RunDir(out).manifest}")




def print_design(design: Any, notes: list[str]) -> None:
    """The design check: per class, whether its effect can be estimated within sources that hold its controls."""
    from rich.table import Table

    table = Table(title="Design check: can each class's effect be told from its source? (confounding/design.parquet)",
                  title_justify="left")
    for column in ("class", "contrast", "design", "strata", "patients", "smallest detectable AUC"):
        table.add_column(column)
    colours = {"estimable": "green", "source unverified": "yellow", "not estimable": "red"}
    for row in design.to_dict("records"):
        mda = row["min_detectable_auc"]
        shown = "–" if mda != mda else (f"{mda:.2f}" if mda <= 1 else "none")
        table.add_row(escape(row["class"]), escape(row["contrast"]),
                      f"[{colours.get(row['design'], 'default')}]{row['design']}[/]", escape(row["strata"] or "–"),
                      f"{row['patients_class']} vs {row['patients_control']}", shown)
    console.print(table)
    alpha, power = design["alpha"].iloc[0], design["power"].iloc[0]
    console.print(f"(smallest AUC detectable with power {power:.0%} at two-sided alpha {alpha:g}, stratified Wilcoxon)")
    for text in [*notes, *[n for n in design["note"] if n]]:
        console.print(f"[yellow]design:[/] {escape(text)}", soft_wrap=True)


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
        import json

        design = json.loads((Path(out) / "phantom.json").read_text())["partial_null"]
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
    print_scan_summary(result, load_config(RunDir(out).config), out, time.perf_counter() - started)
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
    print_metrics_table(result.metrics, out, result.seconds)


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
    print_embed_summary(summary, run_dir)


def print_embed_summary(summary: Any, run_dir: Path) -> None:
    for strategy, reason in summary.skipped_strategies.items():
        console.print(f"[yellow]{escape(strategy)} was skipped in training[/]: {escape(reason)}", soft_wrap=True)
    for strategy, folds in summary.missing_folds.items():
        console.print(f"[yellow]{strategy}: folds {folds} are not trained[/]; its out-of-fold set is incomplete "
                      f"(run 'cxrbio train {run_dir} --strategies {strategy}').", soft_wrap=True)
    for strategy, dims in summary.dims.items():
        console.print(f"{strategy}: {summary.images} images x {dims} dims, one out-of-fold row each "
                      f"-> {RunDir(run_dir).path('embeddings', strategy=strategy, fold=0).parent}")
    console.print(f"Embeddings done in {summary.seconds:.1f} s.")


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
    print_masks_summary(result, run_dir)


def print_masks_summary(result: Any, run_dir: Path) -> None:
    counts = result.table["mask_source"].value_counts()
    state = "up to date" if result.up_to_date else f"{result.seconds:.1f} s"
    console.print("Lung masks: " + ", ".join(f"{source} {n}" for source, n in counts.items())
                  + f" ({state}) -> {RunDir(run_dir).path('masks')}")
    flagged = result.flagged
    for row in flagged.head(10).itertuples():
        console.print(f"  {row.mask_source}: {row.path}: {row.mask_note}", soft_wrap=True, markup=False)
    if len(flagged) > 10:
        console.print(f"  ... and {len(flagged) - 10} more (masks/masks.parquet: mask_source, mask_note).")
    if "body_source" in result.table:
        bodies = result.table["body_source"].value_counts()
        console.print("Body masks (for the shortcut audit): " + ", ".join(f"{source} {n}" for source, n in bodies.items()))
        missing = result.without_body
        for row in missing.head(5).itertuples():
            console.print(f"  no body mask: {row.path}: {row.body_note}", soft_wrap=True, markup=False)
        if len(missing) > 5:
            console.print(f"  ... and {len(missing) - 5} more (masks/masks.parquet: body_source, body_note).")


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
    print_radiomics_summary(result, run_dir)


def print_radiomics_summary(result: Any, run_dir: Path) -> None:
    from cxrbio.features.radiomic_features import STATUS_OK

    run = RunDir(run_dir)
    if result.masks is not None and not result.masks.up_to_date:
        print_masks_summary(result.masks, run_dir)
    status = result.status
    ok = status["status"] == STATUS_OK
    hits = int((status["cache"] == "hit").sum())
    n_features = result.features.shape[1] - 1 if len(result.features) else 0
    where = run.path("radiomics")
    if result.up_to_date:
        console.print(f"Radiomics: up to date ({int(ok.sum())} of {len(status)} images, {n_features} features) -> {where}")
    else:
        console.print(f"Radiomics: {int(ok.sum())} of {len(status)} images, {n_features} features each "
                      f"({hits} from the cache) in {result.seconds:.1f} s -> {where}")
    problems = result.problems
    if len(problems):
        console.print(f"[yellow]{len(problems)} image(s) lack features or have non-finite values[/] "
                      f"(listed in {run.path('radiomics_status')}):")
        paths = run.read_manifest().set_index("image_id")["path"]
        for row in problems.head(10).itertuples():
            detail = row.message if row.status != STATUS_OK else f"non-finite: {row.nonfinite}"
            console.print(f"  {row.status}: {paths.get(row.image_id, row.image_id)}: {detail}", soft_wrap=True, markup=False)
        if len(problems) > 10:
            console.print(f"  ... and {len(problems) - 10} more.")


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
    print_analysis_summary(summary, run_dir, top)


def print_analysis_summary(summary: Any, run_dir: Path, top: int | None) -> None:
    for name in summary.skipped:
        console.print(f"{name}: inputs unchanged since the last analysis, kept (--force redoes it).")
    shown = top or 3
    for name, ranking in summary.candidates.items():
        print_candidates(name, ranking, shown)
    for note in summary.notes[:12]:
        console.print(f"[yellow]note[/] {escape(note)}", soft_wrap=True)
    if len(summary.notes) > 12:
        console.print(f"... {len(summary.notes) - 12} more notes in {RunDir(run_dir).path('analysis_summary')}")
    parts_time = ", ".join(f"{k} {v:.1f} s" for k, v in summary.timings.items())
    console.print(f"Analysis done in {summary.seconds:.1f} s ({parts_time}) -> {RunDir(run_dir).path('analysis_summary').parent}")


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
    for name, found in result.results.items():
        print_lungs_removed(name, found)
    console.print(f"Done in {result.seconds:.0f} s -> {RunDir(run_dir).path('lungs_removed', strategy='*').parent}")


def print_lungs_removed(name: str, found: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"Lungs removed, {name}: central {found['box_fraction']:.0%} box blacked out, "
                        f"{found['folds']} folds, {found['images']} images", title_justify="left")
    for column in ("class", "images", "AUROC normal", "AUROC lungs removed [CI]", "sensitivity normal → removed", ""):
        table.add_column(column)

    def ci(values: list[float]) -> str:
        return f"[{values[0]:.2f}, {values[1]:.2f}]"

    for row in found["per_class"]:
        table.add_row(row["class"], str(row["images"]), f"{row['normal_auroc']:.2f}",
                      f"{row['removed_auroc']:.2f} {ci(row['removed_auroc_ci'])}",
                      f"{row['normal_sensitivity']:.2f} → {row['removed_sensitivity']:.2f}",
                      "recognised without the centre" if row["recognised_without_lungs"] else "")
    console.print(table)
    removed, normal = found["removed"], found["normal"]
    console.print(f"balanced accuracy {normal['balanced_accuracy']:.3f} → {removed['balanced_accuracy']:.3f} "
                  f"{ci(removed['balanced_accuracy_ci'])} (chance {found['chance_balanced_accuracy']:.3f}); a class "
                  "whose AUROC CI lies above 0.5 is recognised from outside the box (docs/confounding.md).")


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
    print_external(result)


def print_external(result: Any) -> None:
    from rich.table import Table

    from cxrbio.evaluation.external import COMPARED

    table = Table(title=f"External set '{result.name}' ({result.images} images): internal out-of-fold → external "
                        "ensemble", title_justify="left")
    for column in ("strategy", "figure", "internal", "external", "drop [95% CI]"):
        table.add_column(column)
    for strategy, found in result.results.items():
        for key, label in COMPARED.items():
            d = found["drop"][key]
            table.add_row(strategy, label, f"{d['internal']:.3f}", f"{d['external']:.3f}",
                          f"{d['drop']:+.3f} [{d['drop_ci'][0]:+.3f}, {d['drop_ci'][1]:+.3f}]")
    console.print(table)
    for strategy, found in result.results.items():
        counts = found.get("replication")
        if counts is None:
            console.print(f"{strategy}: no analysis, no candidate to replicate (run 'cxrbio analyze' first).")
        elif not counts["candidates"]:
            console.print(f"{strategy}: no candidate passed every gate: nothing to replicate.")
        else:
            console.print(f"{strategy}: of {counts['candidates']} passing candidate(s), {counts['replicated']} replicated on "
                          f"the external patients, {counts['not replicated']} not replicated, {counts['not testable']} not "
                          f"testable (RUN/external/{result.name}/{strategy}/replication.parquet)")
    for note in result.notes:
        console.print(f"[yellow]note[/] {escape(note)}", soft_wrap=True)
    console.print(f"Done in {result.seconds:.0f} s -> RUN/external/{result.name}/ (docs/confounding.md)")


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
    print_report_summary(result, time.perf_counter() - started)


def print_report_summary(result: Any, seconds: float) -> None:
    for item in result.missing:
        console.print(f"[yellow]missing[/] {escape(item.what)}: run '{escape(item.command)}'", soft_wrap=True)
    if result.thumbnails:
        console.print("[yellow]note[/] the report embeds X-ray thumbnails: burned-in names and dates travel with it; "
                      "--no-thumbnails (report.thumbnails: false) writes one with no patient pixels.", soft_wrap=True)
    console.print(f"Report: {result.path} ({result.size_bytes / 1e6:.1f} MB, {seconds:.1f} s); "
                  "open it in any browser, no network needed.", soft_wrap=True)


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

    def printed(stage: str, result: Any) -> None:
        if stage == "scan":
            print_scan_summary(result, load_config(RunDir(out).config), out, time.perf_counter() - started)
        elif stage == "train":
            print_metrics_table(result.metrics, out, result.seconds)
        elif stage == "embed":
            print_embed_summary(result, out)
        elif stage == "masks":
            print_masks_summary(result, out)
        elif stage == "radiomics":
            print_radiomics_summary(result, out)
        elif stage == "analyze":
            print_analysis_summary(result, out, None)
        elif stage == "report":
            print_report_summary(result, 0.0)

    with ShowProgress() as show:
        result = demo_stage.run(out, config=load_config(config) if config else None, per_class=per_class,
                                report=report_out, progress=show, on_stage=printed)
    console.print("Stage times: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
                  + f"; total {sum(result.timings.values()):.1f} s")
    console.print(f"Paper tables in the terminal: uv run python analyses/paper_tables.py {out}")
    console.print(f"Analysis tables: {RunDir(out).path('analysis_summary').parent} (docs/analysis.md)")
    console.print(f"[bold]The report: {result.report.path}[/]", soft_wrap=True)


def print_candidates(name: str, ranking: Any, shown: int) -> None:
    """A compact table per space: the top `shown` per disease, short feature names."""
    from rich.table import Table

    from cxrbio.analysis.association import short_name

    radiomics = name == "radiomics"
    if ranking is None or ranking.empty:
        if not radiomics:
            console.print(f"Candidate features, {name}: none tested (too few patients per held-out fold, or no "
                          "matched feature; see the notes).")
        return
    if not radiomics:
        print_gated_candidates(name, ranking, shown)
        return
    table = Table(title=f"Radiomics features: top {shown} per disease by |AUC - 0.5|", title_justify="left")
    for column in ["class", "feature", "SHAP", "dir", "AUC", "q", "boot"]:
        table.add_column(column, no_wrap=column in ("dir", "AUC", "q"))
    for cls, part in ranking.groupby("class", sort=True):
        for item in part.head(shown).to_dict("records"):
            direction = "+" if item["direction"] > 0 else "-"
            table.add_row(cls, short_name(item["feature"]), _num(item["mean_abs_shap"], ".3f"), direction,
                          _num(item["auc"], ".2f"), _num(item["q"], ".0e"), _num(item.get("effect_top_frequency"), ".2f"))
    console.print(table)


def _num(value: Any, fmt: str) -> str:
    return "" if value is None or value != value else format(value, fmt)


def print_gated_candidates(name: str, ranking: Any, shown: int) -> None:
    """Per disease: how many matched features were tested and passed, and the best ones with their gates."""
    from rich.table import Table

    from cxrbio.analysis.association import short_name

    passed = int(ranking["passed"].sum())
    table = Table(title=f"Candidate features, {name}: {passed} of {len(ranking)} tested (class, feature) pairs pass "
                  f"every gate; best {shown} per disease", title_justify="left")
    for column in ["class", "feature", "contrast", "source tier", "AUC [CI]", "q (all)", "folds", "passed",
                   "failed gates", "top descriptor"]:
        table.add_column(column, no_wrap=column in ("feature", "AUC [CI]", "q (all)", "folds"))
    for cls, part in ranking.groupby("class", sort=True):
        for item in part.head(shown).to_dict("records"):
            descriptor = item["descriptors"].split("; ")[0] if item.get("descriptors") else ""
            if descriptor:
                feature, _, rho = descriptor.partition(" (")
                descriptor = f"{short_name(feature)} ({rho}"
            table.add_row(cls, str(item["feature"]), str(item.get("contrast") or ""), str(item.get("source_tier") or ""),
                          f"{_num(item['auc'], '.2f')} [{_num(item['auc_low'], '.2f')}, {_num(item['auc_high'], '.2f')}]",
                          _num(item.get("q_hier", item["q"]), ".0e"), f"{item['folds_agree']}/{item['folds_tested']}",
                          "[green]yes[/]" if item["passed"] else "no", str(item.get("failed_gates") or ""), descriptor)
    console.print(table)


def print_metrics_table(results: dict[str, Any], run_dir: Path, seconds: float) -> None:
    import pandas as pd

    from cxrbio.config import load_config

    cfg = load_config(RunDir(run_dir).config)
    if not results:
        console.print("No strategy has all its folds finished yet.")
        return
    rows = {}

    def pct(value: float | None) -> str:
        return "-" if value is None or value != value else f"{100 * value:.1f}"

    for name, m in results.items():
        ci, pooled = m["ci95"], m["pooled"]
        binary = pooled.get("binary", {})
        row = {}
        for label, key, value in (("7-class acc %", "accuracy", pooled["accuracy"]),
                                  ("2-class acc %", "binary_accuracy", binary.get("accuracy")),
                                  ("sensitivity %", "sensitivity", binary.get("sensitivity")),
                                  ("specificity %", "specificity", binary.get("specificity"))):
            mean, sd = m["fold_mean"][key], m["fold_sd"][key]
            low, high = ci[key]
            row[label] = f"{pct(mean)} ± {pct(sd)}\n{pct(value)} [{pct(low)}, {pct(high)}]"
        calibration = m.get("calibration", {})
        raw, scaled = calibration.get("uncalibrated", {}), calibration.get("scaled")
        row["ECE"] = f"{raw.get('ece', float('nan')):.3f}" + (f"\nscaled {scaled['ece']:.3f}" if scaled else "")
        row["Brier"] = f"{raw.get('brier', float('nan')):.3f}" + (f"\nscaled {scaled['brier']:.3f}" if scaled else "")
        rows[name] = row
    title = (f"Per cell: mean over folds ± SD (the paper's kind of figure), below it pooled out-of-fold [95% CI, "
             f"patient bootstrap]; {cfg.data.positive_class} vs rest; calibration: ECE, Brier (below: temperature-scaled) "
             f"-- {seconds:.0f} s")
    console.print(frame_table(pd.DataFrame(rows).T, title, "strategy", show_lines=True))


def run() -> None:
    app()


if __name__ == "__main__":
    run()

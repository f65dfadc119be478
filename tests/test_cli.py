import pandas as pd
from typer.testing import CliRunner

from cxrbio.cli.app import app
from tests.helpers import write_png

runner = CliRunner()


def test_phantom_then_scan(tmp_path):
    out = tmp_path / "ph"
    result = runner.invoke(app, ["data", "phantom", str(out), "--per-class", "6", "--size", "64",
                                 "--shortcut", "Normal:1.0"])
    assert result.exit_code == 0, result.output
    assert "Phantom data set" in result.output
    renamed = runner.invoke(app, ["data", "scan", str(out), str(tmp_path / "run"), "--folds", "2"])
    assert renamed.exit_code == 2 and "now --k" in renamed.output and not (tmp_path / "run").exists()
    result = runner.invoke(app, ["data", "scan", str(out), str(tmp_path / "run"), "--k", "2", "--size", "64"])
    assert result.exit_code == 0, result.output
    assert "Images and patients per class" in result.output and "Images per fold" in result.output
    manifest = pd.read_parquet(tmp_path / "run" / "manifest.parquet")
    assert manifest["shortcut"].sum() == 6 and "lung_mask" in manifest


def test_user_error_is_one_clear_message_and_exit_2(tmp_path):
    data = tmp_path / "data"
    write_png(data / "tuberculosis" / "a.png")
    result = runner.invoke(app, ["data", "scan", str(data), str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "error:" in result.output and "'tuberculosis'" in result.output and "fix:" in result.output
    assert "Traceback" not in result.output


def test_missing_data_and_bad_config(tmp_path):
    result = runner.invoke(app, ["data", "scan", str(tmp_path / "nowhere"), str(tmp_path / "run")])
    assert result.exit_code == 2 and "does not exist" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("folds:\n  k: 1\n")
    result = runner.invoke(app, ["data", "scan", str(tmp_path), str(tmp_path / "run"), "--config", str(bad)])
    assert result.exit_code == 2 and "'folds.k'" in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and "cxrbio" in result.output


def test_native_stderr_is_captured_and_replayed_only_on_failure(capfd):
    import os

    import pytest

    from cxrbio.runtime.quiet import native_stderr_captured

    with native_stderr_captured():
        os.write(2, b"chatter from C++\n")
    assert "chatter" not in capfd.readouterr().err
    with pytest.raises(RuntimeError), native_stderr_captured():
        os.write(2, b"the real reason\n")
        raise RuntimeError("failed")
    assert "the real reason" in capfd.readouterr().err


# --- One grammar: RUN_DIR is an argument everywhere; the old forms still work and say so once ----------------------


def small_scan_config(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text("data: {image_size: 32}\nfolds: {k: 2}\nconfounding: {permutations: 99, forest_trees: 1}\n"
                    "train: {strategies: [scratch]}\n")
    return path


def deprecation_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("deprecated:")]


def test_scan_and_phantom_take_their_folders_as_arguments_and_the_old_out_still_works(phantom_dir, tmp_path):
    config = small_scan_config(tmp_path)
    new = runner.invoke(app, ["data", "scan", str(phantom_dir), str(tmp_path / "new"), "--config", str(config)])
    assert new.exit_code == 0, new.output
    assert deprecation_lines(new.output) == [] and (tmp_path / "new" / "manifest.parquet").is_file()
    old = runner.invoke(app, ["data", "scan", str(phantom_dir), "--out", str(tmp_path / "old"), "--config", str(config)])
    assert old.exit_code == 0, old.output
    assert len(deprecation_lines(old.output)) == 1 and "cxrbio data scan DATA RUN_DIR" in old.output
    assert (tmp_path / "old" / "manifest.parquet").is_file()
    both = runner.invoke(app, ["data", "scan", str(phantom_dir), str(tmp_path / "a"), "--out", str(tmp_path / "b")])
    assert both.exit_code == 2 and "two run directories" in both.output
    missing = runner.invoke(app, ["data", "scan", str(phantom_dir)])
    assert missing.exit_code == 2 and "needs the run directory" in missing.output
    phantom = runner.invoke(app, ["data", "phantom", "--out", str(tmp_path / "ph"), "--per-class", "2", "--size", "64"])
    assert phantom.exit_code == 0 and len(deprecation_lines(phantom.output)) == 1
    assert (tmp_path / "ph" / "manifest.csv").is_file()


def test_train_and_demo_take_the_run_directory_as_an_argument_and_the_old_out_still_works(tmp_path, monkeypatch):
    """Which run directory each form reaches (the stages are stubbed: their own tests train)."""
    from types import SimpleNamespace

    from cxrbio.stages import demo, train

    reached = []

    def fake_train(run_dir, **options):
        reached.append(("train", str(run_dir), options["force"], options["reconfigure"]))
        return train.TrainResult()

    def fake_demo(run_dir, **options):
        reached.append(("demo", str(run_dir), str(options["report"])))
        return SimpleNamespace(timings={}, report=SimpleNamespace(path=tmp_path / "r.html"))

    monkeypatch.setattr(train, "run", fake_train)
    monkeypatch.setattr(demo, "run", fake_demo)
    monkeypatch.setattr("cxrbio.cli.printers.print_metrics_table", lambda *args: None)
    run = str(tmp_path / "run")
    for args, deprecations in ((["train", run], 0), (["train", "--out", run], 1), (["train", run, "--force"], 0),
                               (["train", run, "--reconfigure"], 0), (["demo", run, "--html", "x.html"], 0),
                               (["demo", "--out", run, "--report", "x.html"], 2)):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert len(deprecation_lines(result.output)) == deprecations, args
    assert reached == [("train", run, False, False), ("train", run, False, False), ("train", run, True, False),
                       ("train", run, False, True), ("demo", run, "x.html"), ("demo", run, "x.html")]
    default = runner.invoke(app, ["demo"])
    assert default.exit_code == 0 and reached[-1][1] == "runs/demo"


def test_report_writes_to_html_and_the_old_out_still_works(phantom_dir, tmp_path):
    config = small_scan_config(tmp_path)
    assert runner.invoke(app, ["data", "scan", str(phantom_dir), str(tmp_path / "run"), "--config", str(config)]).exit_code == 0
    new = runner.invoke(app, ["report", str(tmp_path / "run"), "--html", str(tmp_path / "new.html")])
    assert new.exit_code == 0 and deprecation_lines(new.output) == [] and (tmp_path / "new.html").is_file()
    old = runner.invoke(app, ["report", str(tmp_path / "run"), "--out", str(tmp_path / "old.html")])
    assert old.exit_code == 0 and len(deprecation_lines(old.output)) == 1 and (tmp_path / "old.html").is_file()
    assert "--html FILE" in old.output


def test_force_recomputes_and_moves_the_old_outputs_aside_and_reconfigure_alone_changes_a_config(phantom_dir, tmp_path):
    config = small_scan_config(tmp_path)
    run = tmp_path / "run"
    assert runner.invoke(app, ["data", "scan", str(phantom_dir), str(run), "--config", str(config)]).exit_code == 0
    assert runner.invoke(app, ["masks", str(run)]).exit_code == 0
    kept = runner.invoke(app, ["masks", str(run)])
    assert kept.exit_code == 0 and "up to date" in kept.output and not list(run.glob("superseded-*"))
    forced = runner.invoke(app, ["masks", str(run), "--force"])
    assert forced.exit_code == 0 and "up to date" not in forced.output
    aside = list(run.glob("superseded-*"))
    assert len(aside) == 1 and (aside[0] / "masks" / "masks.parquet").is_file() and (run / "masks" / "masks.parquet").is_file()
    other = tmp_path / "other.yaml"
    other.write_text(config.read_text().replace("train: {strategies: [scratch]}", "train: {strategies: [scratch], epochs: 3}"))
    refused = runner.invoke(app, ["train", str(run), "--config", str(other), "--force"])
    assert refused.exit_code == 2 and "--reconfigure" in refused.output and "train.epochs" in refused.output
    for command in (["data", "scan"], ["train"]):
        shown = runner.invoke(app, [*command, "--help"])
        text = " ".join(shown.output.split())
        assert "--force" in text and "--reconfigure" in text and "superseded-<time>" in text

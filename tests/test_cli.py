import pandas as pd
from typer.testing import CliRunner

from cxrbio.cli import app
from tests.helpers import write_png

runner = CliRunner()


def test_phantom_then_scan(tmp_path):
    out = tmp_path / "ph"
    result = runner.invoke(app, ["data", "phantom", "--out", str(out), "--per-class", "6", "--size", "64",
                                 "--shortcut", "Normal:1.0"])
    assert result.exit_code == 0, result.output
    assert "Phantom data set" in result.output
    renamed = runner.invoke(app, ["data", "scan", str(out), "--out", str(tmp_path / "run"), "--folds", "2"])
    assert renamed.exit_code == 2 and "now --k" in renamed.output and not (tmp_path / "run").exists()
    result = runner.invoke(app, ["data", "scan", str(out), "--out", str(tmp_path / "run"), "--k", "2", "--size", "64"])
    assert result.exit_code == 0, result.output
    assert "Images and patients per class" in result.output and "Images per fold" in result.output
    manifest = pd.read_parquet(tmp_path / "run" / "manifest.parquet")
    assert manifest["shortcut"].sum() == 6 and "lung_mask" in manifest


def test_user_error_is_one_clear_message_and_exit_2(tmp_path):
    data = tmp_path / "data"
    write_png(data / "tuberculosis" / "a.png")
    result = runner.invoke(app, ["data", "scan", str(data), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "error:" in result.output and "'tuberculosis'" in result.output and "fix:" in result.output
    assert "Traceback" not in result.output


def test_missing_data_and_bad_config(tmp_path):
    result = runner.invoke(app, ["data", "scan", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "does not exist" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("folds:\n  k: 1\n")
    result = runner.invoke(app, ["data", "scan", str(tmp_path), "--out", str(tmp_path / "run"), "--config", str(bad)])
    assert result.exit_code == 2 and "'folds.k'" in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and "cxrbio" in result.output


def test_native_stderr_is_captured_and_replayed_only_on_failure(capfd):
    import os

    import pytest

    from cxrbio.quiet import native_stderr_captured

    with native_stderr_captured():
        os.write(2, b"chatter from C++\n")
    assert "chatter" not in capfd.readouterr().err
    with pytest.raises(RuntimeError), native_stderr_captured():
        os.write(2, b"the real reason\n")
        raise RuntimeError("failed")
    assert "the real reason" in capfd.readouterr().err

"""The 74 real X-rays in ../shared/data/cxr-real-sample (skipped where absent)."""

import pandas as pd
from typer.testing import CliRunner

from cxrbio.cli.app import app
from cxrbio.config import load_config
from tests.helpers import FAST_CHECKS, scan

EXPECTED = {"COVID-19": 14, "Pneumonia": 14, "Normal": 14, "Edema": 4, "Effusion": 10, "Emphysema": 8, "Fibrosis": 10}


def test_scan_real_sample(real_sample, tmp_path):
    result = scan(real_sample, load_config(None, {"folds.k": 4, **FAST_CHECKS}), tmp_path / "run")
    m = result.manifest
    assert result.layout == "csv" and len(m) == 74
    assert m.groupby("label").size().to_dict() == EXPECTED
    assert m.groupby("label")["patient_id"].nunique().to_dict() == EXPECTED  # one image per patient
    assert m["included"].all() and result.fold_error is None  # every real image passes QC
    assert (m.groupby("patient_id")["fold"].nunique() == 1).all() and m["fold"].between(0, 3).all()
    # NIH images carry several findings; the extra column survives, the class label stays single.
    nih = m[m["source"] == "jrzech/reproduce-chexnet"]
    assert nih["full_labels"].str.contains("|", regex=False).any()
    assert set(nih["label"]) == {"Edema", "Effusion", "Emphysema", "Fibrosis"}
    raw_ids = set(pd.read_csv(real_sample / "manifest.csv")["patient_id"])
    assert raw_ids.isdisjoint(m["patient_id"])  # pseudonymised
    assert {(w, h) for w, h in zip(m["width"], m["height"])} and m["width"].max() == 256


def test_cli_scan_real_sample_with_paper_folds(real_sample, tmp_path):
    """The study's 10 folds do not fit the sample: summary first, then the clear error."""
    result = CliRunner().invoke(app, ["data", "scan", str(real_sample), str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "Images and patients per class" in result.output
    assert "Edema has 4" in result.output and "Emphysema has 8" in result.output
    assert "source confounded with class" in result.output
    assert (tmp_path / "x" / "manifest.parquet").is_file()

"""Each input layout, patient ids, privacy and every bad input of the scan."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrbio.data.layouts import patient_from_filename
from cxrbio.errors import ConfigError, DataError
from tests.helpers import make_config, scan, write_dicom, write_png

CLASSES3 = ["COVID-19", "Pneumonia", "Normal"]


def three_class_config(_small_config=None, **overrides):
    return make_config(CLASSES3, **overrides)


def make_class_folders(root: Path, per_class: int = 4, names: tuple[str, ...] = ("covid-19", "pneumonia", "normal")) -> Path:
    seed = 0
    for name in names:
        for i in range(per_class):
            write_png(root / name / f"{name}_{i}.png", seed=seed)
            seed += 1
    return root


def test_class_folders(tmp_path, small_config):
    data = make_class_folders(tmp_path / "data")
    (data / "normal" / "README.txt").write_text("not an image")
    result = scan(data, three_class_config(small_config), tmp_path / "run")
    m = result.manifest
    assert result.layout == "folders"
    assert sorted(m["label"].unique()) == sorted(CLASSES3)  # folder names mapped to canonical classes
    assert (m.groupby("label").size() == 4).all()
    assert m["fold"].between(0, 2).all() and m["included"].all()
    assert any("ignored 1 files" in n for n in result.notes)
    assert any("no patient id" in n for n in result.notes)  # one patient per file, said aloud
    assert m["patient_id"].nunique() == 12
    saved = pd.read_parquet(tmp_path / "run" / "manifest.parquet")
    pd.testing.assert_frame_equal(saved, m)
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_csv_layout_keeps_extra_columns(tmp_path, small_config):
    data = make_class_folders(tmp_path / "data")
    rows = []
    for path in sorted((data).rglob("*.png")):
        rows.append({"path": str(path.relative_to(data)), "label": path.parent.name.upper(),
                     "patient_id": f"pt-{path.stem}", "source": "site-a", "age": 50, "label_note": "x"})
    pd.DataFrame(rows).to_csv(data / "labels.csv", index=False)
    result = scan(data / "labels.csv", three_class_config(small_config), tmp_path / "run")
    m = result.manifest
    assert result.layout == "csv"
    assert set(m["source"]) == {"site-a"} and "age" in m and "label_note" in m
    assert m["raw_label"].str.isupper().all() and set(m["label"]) == set(CLASSES3)


def test_folder_with_manifest_csv_is_read_through_it(tmp_path, small_config):
    data = make_class_folders(tmp_path / "data")
    files = sorted(data.rglob("*.png"))
    pd.DataFrame({"path": [str(p.relative_to(data)) for p in files],
                  "label": ["Normal"] * len(files)}).to_csv(data / "manifest.csv", index=False)
    result = scan(data, make_config(["Normal", "COVID-19"], folds__k=2), tmp_path / "run")
    assert result.layout == "csv" and set(result.manifest["label"]) == {"Normal"}


def test_chestxray14_selects_single_label_findings(tmp_path, small_config):
    data = tmp_path / "nih"
    entries = []
    labels = ["Edema", "Effusion", "Edema|Effusion", "No Finding", "Atelectasis", "Fibrosis"]
    for patient in range(1, 25):
        finding = labels[patient % len(labels)]
        name = f"{patient:08d}_000.png"
        write_png(data / "images_001" / "images" / name, seed=patient)
        entries.append({"Image Index": name, "Finding Labels": finding, "Follow-up #": 0, "Patient ID": patient,
                        "Patient Age": 60, "Patient Gender": "M", "View Position": "PA"})
    entries.append({"Image Index": "00000099_000.png", "Finding Labels": "Edema", "Follow-up #": 0,
                    "Patient ID": 99, "Patient Age": 60, "Patient Gender": "F", "View Position": "PA"})
    pd.DataFrame(entries).to_csv(data / "Data_Entry_2017_v2020.csv", index=False)
    cfg = make_config(["Edema", "Effusion", "Fibrosis", "Normal"])
    result = scan(data, cfg, tmp_path / "run")
    m = result.manifest
    assert result.layout == "nih"
    assert sorted(m["label"].unique()) == ["Edema", "Effusion", "Fibrosis"]
    assert (m["full_labels"] == m["label"]).all()  # multi-label and unmapped findings left out
    assert len(m) == 12
    assert any("no image file" in n and "00000099_000.png" in n for n in result.notes)
    assert set(m["view"]) == {"PA"}


def test_covid_chestxray_dataset_frontal_views_only(tmp_path, small_config):
    data = tmp_path / "covid"
    rows = []
    for i in range(12):
        finding = ["Pneumonia/Viral/COVID-19", "No Finding", "Pneumonia/Bacterial/Streptococcus"][i % 3]
        view = "L" if i == 0 else ("PA" if i % 2 else "AP Supine")
        name = f"img{i}.png"
        write_png(data / "images" / name, seed=i)
        rows.append({"patientid": i // 2, "finding": finding, "view": view, "modality": "X-ray",
                     "folder": "images", "filename": name})
    pd.DataFrame(rows).to_csv(data / "metadata.csv", index=False)
    result = scan(data, make_config(["COVID-19", "Normal"], folds__k=2), tmp_path / "run")
    m = result.manifest
    assert result.layout == "covid"
    assert set(m["label"]) == {"COVID-19", "Normal"}
    assert "L" not in set(m["view"])  # the lateral view is dropped
    assert len(m) == 7
    assert m.groupby("patient_id").size().max() <= 2


def test_patient_ids_from_file_name_schemes():
    assert patient_from_filename(Path("00000013_005.png")) == "nih:00000013"
    assert patient_from_filename(Path("nih_00005986_000.png")) == "nih:00005986"
    assert patient_from_filename(Path("person1_bacteria_1.jpeg")) == "kermany:person1"
    assert patient_from_filename(Path("kermany_person107_virus_197.png")) == "kermany:person107"
    # Kermany's normal files: one patient's images share the IM-number (they were each their own patient).
    assert patient_from_filename(Path("IM-0115-0001.jpeg")) == patient_from_filename(Path("IM-0115-0002.jpeg")) \
        == "kermany:im-0115"
    assert patient_from_filename(Path("NORMAL2-IM-1427-0001.jpeg")) == "kermany:normal2-im-1427"
    assert patient_from_filename(Path("train/patient00042/study3/view1_frontal.jpg")) == "chexpert:patient00042"
    assert patient_from_filename(Path("files/p10/p10000032/s50414267/02aa804e.jpg")) == "mimic:p10000032"
    assert patient_from_filename(Path("scan_0001.png")) is None


def test_public_data_sets_are_recognised_by_their_naming():
    from cxrbio.data.provenance import UNKNOWN, dataset_from_filename

    expected = {"00000013_005.png": "nih-chestxray14", "person1_virus_6.jpeg": "kermany-paediatric",
                "NORMAL2-IM-1427-0001.jpeg": "kermany-paediatric", "IM-0115-0001.jpeg": "kermany-paediatric",
                "COVID-12.png": "covid19-radiography-db", "Viral Pneumonia-3.png": "covid19-radiography-db",
                "CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg": "chexpert",
                "p10/p10000032/s50414267/02aa804e-bde0afdd.jpg": "mimic-cxr", "my_scan_17.png": UNKNOWN}
    assert {name: dataset_from_filename(name) for name in expected} == expected


def test_sources_never_default_to_the_root_folders_name(tmp_path, small_config):
    """Three data sets mixed in class folders used to be 'one source' (the root's name) and no check spoke."""
    data = tmp_path / "mixed"
    for i in range(4):
        write_png(data / "covid-19" / f"covid_{i}.png", seed=i)
        write_png(data / "pneumonia" / f"person{i}_bacteria_{i}.png", seed=10 + i)
        write_png(data / "normal" / f"IM-00{i}1-0001.png", seed=20 + i)
    result = scan(data, three_class_config(small_config), tmp_path / "auto")
    by_label = result.manifest.groupby("label")["source"].agg(set)
    assert by_label["Pneumonia"] == {"kermany-paediatric"} and by_label["Normal"] == {"kermany-paediatric"}
    assert by_label["COVID-19"] == {"unknown"} and "mixed" not in set(result.manifest["source"])
    assert any("4 of 12 images have an unknown source" in n for n in result.notes)
    nothing = scan(data, three_class_config(small_config, **{"data.source_from": "none"}), tmp_path / "none").manifest
    assert set(nothing["source"]) == {"unknown"}


def test_sources_from_the_folder_below_the_class_or_a_column(tmp_path, small_config):
    data = tmp_path / "data"
    for c, name in enumerate(("covid-19", "pneumonia", "normal")):
        for i in range(4):
            write_png(data / name / ("hospital-a" if i % 2 else "hospital-b") / f"{name}_{i}.png", seed=10 * c + i)
    m = scan(data, three_class_config(small_config, **{"data.source_from": "subfolder"}), tmp_path / "sub").manifest
    assert set(m["source"]) == {"hospital-a", "hospital-b"}
    assert (m.groupby("label")["source"].nunique() == 2).all()
    rows = [{"path": str(p.relative_to(data)), "label": p.parts[-3], "source": p.parent.name if k % 3 else ""}
            for k, p in enumerate(sorted(data.rglob("*.png")))]
    pd.DataFrame(rows).to_csv(data / "labels.csv", index=False)
    m = scan(data / "labels.csv", three_class_config(small_config), tmp_path / "csv").manifest
    assert set(m["source"]) == {"hospital-a", "hospital-b", "unknown"}  # an empty cell is unknown, not the folder name
    pd.DataFrame(rows).drop(columns="source").to_csv(data / "nosource.csv", index=False)
    with pytest.raises(DataError, match="no 'source' column"):
        scan(data / "nosource.csv", three_class_config(small_config, **{"data.source_from": "column"}), tmp_path / "x")


def test_kermany_names_group_a_patients_images(tmp_path, small_config):
    data = tmp_path / "data"
    for person in range(6):
        for k in range(2):
            write_png(data / "pneumonia" / f"person{person}_bacteria_{k}.png", seed=person * 10 + k)
            write_png(data / "normal" / f"IM-{person:04d}-{k + 1:04d}.jpeg", seed=100 + person * 10 + k)
    m = scan(data, make_config(["Pneumonia", "Normal"]), tmp_path / "run").manifest
    assert m["patient_id"].nunique() == 12 and (m.groupby("patient_id").size() == 2).all()
    assert (m.groupby("patient_id")["fold"].nunique() == 1).all()
    assert set(m["source"]) == {"kermany-paediatric"}


def test_dicom_patient_id_is_used_but_no_tag_is_written(tmp_path, small_config):
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for i in range(6):
        for k in range(2):
            pixels = rng.integers(0, 4095, (40, 32)).astype(np.uint16)
            write_dicom(data / "normal" / f"{i}_{k}.dcm", pixels, patient_id=f"HOSP-{i:04d}",
                        patient_name=f"Person^Number{i}")
    result = scan(data, make_config(["Normal", "COVID-19"]), tmp_path / "run")
    m = result.manifest
    assert m["patient_id"].nunique() == 6 and not any("no patient id" in n for n in result.notes)
    blob = (tmp_path / "run" / "manifest.parquet").read_bytes() + (tmp_path / "run" / "config.yaml").read_bytes()
    for secret in (b"HOSP-", b"Person^Number", b"19600101"):
        assert secret not in blob


def test_pseudonyms_hide_raw_ids_unless_opted_out(tmp_path, small_config):
    data = make_class_folders(tmp_path / "data")
    files = sorted(data.rglob("*.png"))
    pd.DataFrame({"path": [str(p.relative_to(data)) for p in files], "label": [p.parent.name for p in files],
                  "patient_id": [f"MRN{i:06d}" for i in range(len(files))]}).to_csv(data / "m.csv", index=False)
    cfg = three_class_config(small_config)
    hidden = scan(data / "m.csv", cfg, tmp_path / "run").manifest
    assert not hidden["patient_id"].str.contains("MRN").any()
    assert b"MRN0" not in (tmp_path / "run" / "manifest.parquet").read_bytes()
    again = scan(data / "m.csv", cfg, tmp_path / "run").manifest  # same run dir, same salt, same pseudonyms
    assert list(again["patient_id"]) == list(hidden["patient_id"])
    other = scan(data / "m.csv", cfg, tmp_path / "run2").manifest  # another run, another salt
    assert set(other["patient_id"]).isdisjoint(hidden["patient_id"])
    assert list(other["fold"]) == list(hidden["fold"])  # folds do not depend on the salt
    cfg = three_class_config(data__privacy__pseudonymize_patients=False)
    plain = scan(data / "m.csv", cfg, tmp_path / "run3").manifest
    assert plain["patient_id"].str.startswith("MRN").all()


# --- bad input -------------------------------------------------------------------------

def test_truncated_and_fake_images_become_qc_flags(tmp_path, small_config):
    data = make_class_folders(tmp_path / "data")
    broken = data / "normal" / "normal_0.png"
    broken.write_bytes(broken.read_bytes()[:100])
    (data / "covid-19" / "fake.png").write_text("<html>not an image</html>")
    result = scan(data, three_class_config(small_config), tmp_path / "run")
    m = result.manifest.set_index("path")
    assert m.loc[str(broken), "qc_status"] == "unreadable" and not m.loc[str(broken), "included"]
    assert "truncated" in m.loc[str(broken), "qc_reason"] or "corrupt" in m.loc[str(broken), "qc_reason"]
    fake = str(data / "covid-19" / "fake.png")
    assert m.loc[fake, "qc_status"] == "unreadable" and m.loc[fake, "fold"] == -1


def test_low_contrast_is_flagged_and_excluded(tmp_path, small_config):
    data = make_class_folders(tmp_path / "data")
    washed = np.full((80, 64), 200, np.uint8) + np.random.default_rng(0).integers(0, 8, (80, 64)).astype(np.uint8)
    write_png(data / "normal" / "washed.png", washed)
    cfg = three_class_config(small_config)
    m = scan(data, cfg, tmp_path / "run").manifest.set_index("path")
    row = m.loc[str(data / "normal" / "washed.png")]
    assert row["qc_status"] == "low_contrast" and not row["included"] and row["qc_contrast"] < 0.2
    cfg = three_class_config(data__qc__exclude_low_contrast=False)
    kept = scan(data, cfg, tmp_path / "run2").manifest.set_index("path")
    assert kept.loc[str(data / "normal" / "washed.png"), "included"]


def test_empty_class_folder(tmp_path, small_config):
    data = make_class_folders(tmp_path / "data")
    (data / "covid-19").mkdir(exist_ok=True)
    for f in (data / "covid-19").iterdir():
        f.unlink()
    with pytest.raises(DataError) as info:
        scan(data, three_class_config(small_config), tmp_path / "run")
    assert "covid-19 holds no images" in info.value.message and info.value.fix


def test_label_not_in_config(tmp_path, small_config):
    data = make_class_folders(tmp_path / "data", names=("covid-19", "pneumonia", "normal", "atelectasis"))
    cfg = three_class_config(small_config)
    with pytest.raises(DataError) as info:
        scan(data, cfg, tmp_path / "run")
    assert "'atelectasis' (4 images" in info.value.message and "data.classes" in info.value.fix
    cfg = three_class_config(data__drop_unknown_labels=True)
    result = scan(data, cfg, tmp_path / "run")
    assert "atelectasis" in " ".join(result.notes) and len(result.manifest) == 12


def test_csv_row_with_missing_file(tmp_path, small_config):
    data = make_class_folders(tmp_path / "data")
    files = sorted(data.rglob("*.png"))
    frame = pd.DataFrame({"path": [str(p.relative_to(data)) for p in files], "label": [p.parent.name for p in files]})
    frame.loc[len(frame)] = ["normal/gone.png", "normal"]
    frame.to_csv(data / "m.csv", index=False)
    m = scan(data / "m.csv", three_class_config(small_config), tmp_path / "run").manifest
    row = m[m["path"].str.endswith("gone.png")].iloc[0]
    assert row["qc_status"] == "missing" and row["row"] == "m.csv row 14" and not row["included"]


def test_csv_with_all_paths_wrong(tmp_path, small_config):
    pd.DataFrame({"path": ["a.png", "b.png"], "label": ["Normal", "COVID-19"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError, match="none of the 2 listed images exists"):
        scan(tmp_path / "m.csv", small_config, tmp_path / "run")


def test_csv_without_required_columns(tmp_path, small_config):
    pd.DataFrame({"file": ["a.png"], "class": ["Normal"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError, match="lacks the column"):
        scan(tmp_path / "m.csv", small_config, tmp_path / "run")


def test_too_few_patients_for_folds_names_classes_and_options(tmp_path, small_config):
    data = make_class_folders(tmp_path / "data", per_class=4)
    cfg = three_class_config(folds__k=5)
    result = scan(data, cfg, tmp_path / "run")
    error = result.fold_error
    assert error is not None
    assert "COVID-19 has 4" in error.message and "5 folds" in error.message
    assert "--k 4" in error.fix and "data.classes" in error.fix
    assert (result.manifest["fold"] == -1).all()  # the manifest is still written, without folds


def test_failed_scan_keeps_existing_manifest(tmp_path, small_config):
    data = make_class_folders(tmp_path / "data")
    cfg = three_class_config(small_config)
    scan(data, cfg, tmp_path / "run")
    before = (tmp_path / "run" / "manifest.parquet").read_bytes()
    cfg = make_config(["COVID-19", "Normal"])  # now 'pneumonia' is unknown
    with pytest.raises(ConfigError, match="data.classes"):  # another config: refused, listing the key
        scan(data, cfg, tmp_path / "run")
    with pytest.raises(DataError):  # reconfigured, the scan itself fails: nothing was moved or written
        scan(data, cfg, tmp_path / "run", reconfigure=True)
    assert (tmp_path / "run" / "manifest.parquet").read_bytes() == before
    assert not list((tmp_path / "run").glob("superseded-*"))


def test_refuses_to_replace_manifest_of_trained_run(tmp_path, small_config):
    from cxrbio.run import freshness
    from cxrbio.run.rundir import RunDir

    data = make_class_folders(tmp_path / "data")
    cfg = three_class_config(small_config)
    scan(data, cfg, tmp_path / "run")
    run = RunDir(tmp_path / "run")
    freshness.write_stamp(run, freshness.expected(run, "train_fold", cfg.model_dump(mode="json"),
                                                  {"strategy": "scratch", "fold": 0}))  # a trained fold
    with pytest.raises(DataError, match="already holds results of later stages"):
        scan(data, cfg, tmp_path / "run")
    again = scan(data, cfg, tmp_path / "run", force=True)
    assert again.unchanged and again.superseded is None  # the same manifest: the fold stays
    assert freshness.read_stamp(run.root, "train_fold", {"strategy": "scratch", "fold": 0}) is not None

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrbio.data.duplicates import near_duplicate_groups
from cxrbio.data.folds import assign_folds
from cxrbio.errors import DataError
from tests.helpers import make_config, scan, write_png, xray_like


def grouped_labels(n_patients=60, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = ["A", "B", "C"][p % 3]
        for _ in range(rng.integers(1, 4)):
            rows.append((label, f"patient-{p}"))
    frame = pd.DataFrame(rows, columns=["label", "group"])
    return frame["label"], frame["group"]


def test_no_patient_in_two_folds_and_every_fold_has_every_class():
    labels, groups = grouped_labels()
    folds = assign_folds(labels, groups, k=5, seed=1)
    frame = pd.DataFrame({"label": labels, "group": groups, "fold": folds})
    assert (frame.groupby("group")["fold"].nunique() == 1).all()
    per_fold = pd.crosstab(frame["fold"], frame["label"])
    assert per_fold.shape == (5, 3) and (per_fold > 0).all().all()
    # Stratified: each fold's class shares stay close to the overall shares.
    overall = frame["label"].value_counts(normalize=True)
    shares = per_fold.div(per_fold.sum(axis=1), axis=0)
    assert (shares - overall).abs().max().max() < 0.12


def test_folds_are_seeded_and_independent_of_row_order():
    labels, groups = grouped_labels()
    a = assign_folds(labels, groups, k=4, seed=7)
    assert np.array_equal(a, assign_folds(labels, groups, k=4, seed=7))
    assert not np.array_equal(a, assign_folds(labels, groups, k=4, seed=8))
    order = np.random.default_rng(0).permutation(len(labels))
    shuffled = assign_folds(labels.iloc[order].reset_index(drop=True), groups.iloc[order].reset_index(drop=True), k=4, seed=7)
    assert np.array_equal(shuffled, a[order])


def test_too_few_groups():
    labels = pd.Series(["A"] * 10 + ["B"] * 3)
    groups = pd.Series([f"a{i}" for i in range(10)] + ["b0", "b1", "b1"])
    with pytest.raises(DataError) as info:
        assign_folds(labels, groups, k=3, seed=0)
    assert "B has 2" in info.value.message and "--k 2" in info.value.fix


def test_near_duplicate_groups_by_hamming_distance():
    zero = "0" * 64
    hashes = [zero, zero[:-1] + "3", "f" * 64, zero[:-2] + "ff", "1" + zero[1:]]
    groups = near_duplicate_groups(hashes, max_distance=2)
    assert groups[0] == groups[1] == groups[4]  # bits in the first and the last word both count
    assert len({groups[0], groups[2], groups[3]}) == 3
    # Chains join: a~b and b~c put a, b and c in one group even if a and c are far apart.
    chain = near_duplicate_groups([zero, zero[:-1] + "3", zero[:-1] + "f"], max_distance=2)
    assert len(set(chain)) == 1
    # Blocked computation gives the same groups as one block.
    rng = np.random.default_rng(0)
    many = ["".join(rng.choice(list("0123456789abcdef"), 64)) for _ in range(50)] + [zero] * 3
    np.testing.assert_array_equal(near_duplicate_groups(many, 8, max_block_elements=40),
                                  near_duplicate_groups(many, 8))


def test_near_duplicates_of_different_patients_share_a_fold(tmp_path):
    data = tmp_path / "data"
    rows = []
    for i in range(12):
        label = ["COVID-19", "Normal"][i % 2]
        path = write_png(data / f"img{i}.png", xray_like(seed=100 + i))
        rows.append({"path": path.name, "label": label, "patient_id": f"pt{i}"})
    # The same radiograph again under another patient id: resized and re-exported as JPEG.
    original = Image.open(data / "img0.png")
    original.resize((48, 60)).save(data / "copy-of-0.jpg", quality=90)
    rows.append({"path": "copy-of-0.jpg", "label": "COVID-19", "patient_id": "pt-other"})
    # And an exact byte copy under a third patient id.
    (data / "exact-of-2.png").write_bytes((data / "img2.png").read_bytes())
    rows.append({"path": "exact-of-2.png", "label": "COVID-19", "patient_id": "pt-third"})
    pd.DataFrame(rows).to_csv(data / "manifest.csv", index=False)
    m = scan(data, make_config(["COVID-19", "Normal"]), tmp_path / "run").manifest.set_index("row")
    by_name = {r.split(" row ")[0]: r for r in m.index}  # noqa: F841 - rows named by CSV line
    first, copy = m.loc["manifest.csv row 2"], m.loc["manifest.csv row 14"]
    assert first["dup_group"] == copy["dup_group"] and first["fold"] == copy["fold"]
    assert first["patient_id"] != copy["patient_id"]
    exact = m.loc["manifest.csv row 15"]
    assert exact["exact_duplicates"] == 1 and exact["fold"] == m.loc["manifest.csv row 4", "fold"]
    from cxrbio.data.summary import summarize

    summary = summarize(m.reset_index(), ["COVID-19", "Normal"])
    assert summary.duplicates["groups spanning patients"] == 2
    assert summary.duplicates["exact duplicate images"] == 2

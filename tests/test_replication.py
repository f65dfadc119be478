"""Replication of passing candidates on an external set: found where planted, silent where nothing is."""

import numpy as np
import pandas as pd
import pytest

from cxrbio.analysis import replication

CLASSES = ["B", "Normal"]


def external(seed: int, *, shift: float, patients: int = 30, images: int = 2, sources: int = 2):
    """An external set: patients of B and Normal over ``sources`` sources; fold dim 'e0003' higher in B by ``shift``."""
    rng = np.random.default_rng(seed)
    rows, values = [], []
    for cls in CLASSES:
        for p in range(patients):
            source = f"s{p % sources}"
            level = rng.normal(shift if cls == "B" else 0.0, 1) + (0.8 if source == "s1" else 0.0)  # sources differ
            for k in range(images):
                rows.append({"image_id": f"{cls}-{p}-{k}", "patient_id": f"{cls}-{p}", "label": cls, "source": source})
                values.append(level + rng.normal(0, 0.3))
    manifest = pd.DataFrame(rows)
    noise = rng.normal(size=(len(manifest), 6))
    fold0 = pd.DataFrame(noise, columns=[f"e{j:04d}" for j in range(6)])
    fold0["e0003"] = values
    fold1 = pd.DataFrame(rng.normal(size=(len(manifest), 6)), columns=[f"e{j:04d}" for j in range(6)])
    fold1["e0001"] = np.asarray(values) * 2 + 5  # the same unit in another fold model, another scale
    return manifest, {0: fold0, 1: fold1}


CANDIDATES = pd.DataFrame([
    {"class": "B", "feature": "f0001", "dims": "0:e0003|1:e0001", "expected_direction": 1, "auc": 0.9, "passed": True},
    {"class": "B", "feature": "f0002", "dims": "0:e0000|1:e0002", "expected_direction": 1, "auc": 0.8, "passed": True},
    {"class": "B", "feature": "f0003", "dims": "0:e0003", "expected_direction": -1, "auc": 0.2, "passed": True},
    {"class": "B", "feature": "f0004", "dims": "0:e0004", "expected_direction": 1, "auc": 0.6, "passed": False},
])
SETTINGS = {"control": "Normal", "min_patients": 5, "gate_q": 0.05, "permutation_below": 5, "permutations": 999, "seed": 0}


def test_a_planted_candidate_replicates_noise_does_not_and_the_wrong_direction_does_not():
    manifest, embeddings = external(1, shift=1.5)
    out = replication.replicate(CANDIDATES, embeddings, manifest, CLASSES, **SETTINGS).set_index("feature")
    assert list(out.index) == ["f0001", "f0002", "f0003"]  # passing candidates only
    assert out.loc["f0001", "verdict"] == "replicated" and out.loc["f0001", "auc"] > 0.8
    assert out.loc["f0001", "contrast"] == "vs Normal" and out.loc["f0001", "strata"] == 2
    assert out.loc["f0002", "verdict"] == "not replicated"
    assert out.loc["f0003", "verdict"] == "not replicated" and out.loc["f0003", "p"] > 0.99  # one-sided


@pytest.mark.parametrize("seed", range(5))
def test_nothing_replicates_on_an_external_set_without_the_finding(seed):
    manifest, embeddings = external(10 + seed, shift=0.0)
    out = replication.replicate(CANDIDATES, embeddings, manifest, CLASSES, **SETTINGS)
    assert (out["verdict"] != "replicated").all()


def test_too_few_patients_or_no_embedded_dim_is_not_testable_never_replicated():
    manifest, embeddings = external(2, shift=2.0, patients=3)
    out = replication.replicate(CANDIDATES, embeddings, manifest, CLASSES, **SETTINGS)
    assert (out["verdict"] == "not testable").all() and out["p"].isna().all()
    manifest, embeddings = external(3, shift=2.0)
    missing = CANDIDATES.assign(dims="7:e0003")  # a fold the external run did not embed
    out = replication.replicate(missing, embeddings, manifest, CLASSES, **SETTINGS)
    assert (out["verdict"] == "not testable").all()
    summary = replication.summary(out)
    assert summary["candidates"] == 3 and summary["not testable"] == 3 and summary["replicated"] == 0

"""Shared fixtures: a small phantom data set, an isolated feature cache, the real sample (helpers: tests/helpers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import REAL_SAMPLE, make_config

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")



@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 images per class at 64 px: enough patients for 3 folds, seconds to make."""
    from cxrbio.data.phantom import generate_phantom

    out = tmp_path_factory.mktemp("phantom")
    generate_phantom(out, per_class=8, size=64, seed=3)
    return out


@pytest.fixture(autouse=True, scope="session")
def isolated_feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tests never read or fill the user's radiomics cache (~/.cache/cxrbio)."""
    folder = tmp_path_factory.mktemp("feature-cache")
    os.environ["CXRBIO_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture
def real_sample() -> Path:
    if not (REAL_SAMPLE / "manifest.csv").is_file():
        pytest.skip(f"real X-ray sample not found at {REAL_SAMPLE} (set CXRBIO_REAL_SAMPLE to its folder)")
    return REAL_SAMPLE


@pytest.fixture
def small_config():
    return make_config()

"""Shared fixtures: the phantom, the runs many tests start from (made once per session, read-only: a test that writes
works on a copy, :func:`tests.helpers.copy_run`), one Ray instance, an isolated feature cache, the real sample.

Tiers: ``uv run pytest`` runs everything not marked ``slow``; ``uv run pytest -m slow`` the tests that train networks,
start Ray or run the whole pipeline. Session fixtures are made only when a test of the running tier asks for them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import ANALYSIS_TINY, FAST_PARAMS, REAL_SAMPLE, make_config, tiny_config

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
    """Tests never read or fill the user's caches (~/.cache/cxrbio: radiomics features, file digests)."""
    folder = tmp_path_factory.mktemp("feature-cache")
    os.environ["CXRBIO_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def scanned_phantom(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantom scanned with :func:`tests.helpers.make_config` (64 px, 3 folds): read it, or copy it to write."""
    from tests.helpers import scan

    root = tmp_path_factory.mktemp("scanned-phantom") / "run"
    scan(phantom_dir, make_config(), root)
    return root


@pytest.fixture(scope="session")
def scanned_tiny(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantom scanned with :func:`tests.helpers.tiny_config` (32 px, 3 folds): read it, or copy it to write."""
    from tests.helpers import scan

    root = tmp_path_factory.mktemp("scanned-tiny") / "run"
    scan(phantom_dir, tiny_config(), root)
    return root


@pytest.fixture(scope="session")
def fast_params(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pyradiomics parameter file that extracts in a fraction of a second per image."""
    path = tmp_path_factory.mktemp("params") / "fast.yaml"
    path.write_text(FAST_PARAMS)
    return path


@pytest.fixture(scope="session")
def fake_trained_run(phantom_dir: Path, fast_params: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantom scanned (32 px, 3 folds) with untrained fold models of scratch and finetune-2 registered: what the
    stages after training need, in seconds (embedding export does not care how the weights were reached)."""
    from cxrbio.config import load_config
    from cxrbio.run.rundir import RunDir
    from tests.helpers import scan, untrained_fold_models

    root = tmp_path_factory.mktemp("fake-trained") / "run"
    config = load_config(None, {**ANALYSIS_TINY, "radiomics.params": str(fast_params)})
    scan(phantom_dir, config, root)
    untrained_fold_models(RunDir(root), config)
    return root


@pytest.fixture(scope="session")
def embedded_run(fake_trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`fake_trained_run` with its embeddings (``cxrbio embed``) and radiomics (``cxrbio radiomics``)."""
    from typer.testing import CliRunner

    from cxrbio.cli.app import app

    root = tmp_path_factory.mktemp("embedded") / "run"
    shutil.copytree(fake_trained_run, root)
    for command in (["embed", str(root)], ["radiomics", str(root)]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="session")
def trained_run(phantom_dir: Path, fast_params: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """One trained run for every test that needs trained folds but does not test training itself: the phantom scanned
    and trained through the library (scratch, 2 folds, 2 epochs, the fast config of :data:`tests.helpers.TRAIN_TINY`).

    ``root``; ``config``; ``scanned`` and ``trained``: the stages' results; ``events``: their progress events.
    """
    from cxrbio import stages

    root = tmp_path_factory.mktemp("trained") / "run"
    config = tiny_config(folds__k=2, train__epochs=2, **{
        "radiomics.params": str(fast_params), "analysis.permutations": 3, "analysis.bootstrap": 3,
        "analysis.audit_dims": 1, "analysis.audit_images": 2})
    events: list = []
    scanned = stages.scan.run(root, data=phantom_dir, config=config, progress=events.append)
    trained = stages.train.run(root, progress=events.append)
    return SimpleNamespace(root=root, config=config, scanned=scanned, trained=trained, events=events)


#: The config of the deterministic runs: op determinism on, 2 folds, 2 epochs (YAML, as a user writes one).
DETERMINISTIC_YAML = ("data: {image_size: 32}\nfolds: {k: 2}\nmodel: {alpha: 0.35, dense_units: 16, batchnorm_momentum: 0.9}\n"
                      "train: {epochs: 2, batch_size: 16, early_stopping_patience: 0, strategies: [scratch], "
                      "checkpoint_seconds: 3600, deterministic: true}\nconfounding: {permutations: 99, forest_trees: 1}\n")


@pytest.fixture(scope="session")
def deterministic_fold(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A new user's sequence, once: ``cxrbio data scan PHANTOM RUN --config my.yaml`` (op determinism on), then
    ``cxrbio train RUN --folds 0`` with no config. The reference of the determinism and resume tests.

    ``root``, ``config_file``, ``config_before_train`` (config.yaml as the scan wrote it), ``scan_output``, ``train_output``.
    """
    from typer.testing import CliRunner

    from cxrbio.cli.app import app

    folder = tmp_path_factory.mktemp("deterministic")
    config_file = folder / "my.yaml"
    config_file.write_text(DETERMINISTIC_YAML)
    root = folder / "run"
    scanned = CliRunner().invoke(app, ["data", "scan", str(phantom_dir), str(root), "--config", str(config_file)])
    assert scanned.exit_code == 0, scanned.output
    before = (root / "config.yaml").read_text()
    trained = CliRunner().invoke(app, ["train", str(root), "--folds", "0"])
    assert trained.exit_code == 0, trained.output
    return SimpleNamespace(root=root, config_file=config_file, config_before_train=before, scan_output=scanned.output,
                           train_output=trained.output)


@pytest.fixture(scope="session")
def ray_instance():
    """One local Ray instance for every test that needs one (started once: a start costs about 10 s)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def real_sample() -> Path:
    if not (REAL_SAMPLE / "manifest.csv").is_file():
        pytest.skip(f"real X-ray sample not found at {REAL_SAMPLE} (set CXRBIO_REAL_SAMPLE to its folder)")
    return REAL_SAMPLE


@pytest.fixture
def small_config():
    return make_config()

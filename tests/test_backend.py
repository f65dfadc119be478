"""The Keras-backend-neutral training path: in-model augmentation, PyDataset batches, JAX without TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.helpers import REPO, tiny_config

keras = pytest.importorskip("keras")


def test_in_model_augmentation_is_the_tf_data_transform():
    """Same angles and shifts: the same projective rows, and the same resampled image, as the tf.data path."""
    import tensorflow as tf

    from cxrbio.data.input_pipeline import apply_transforms, transforms_for
    from cxrbio.models.augment import transform_rows

    size = 48
    angles = np.array([0.0, 0.15, -0.17], np.float32)
    shift_x, shift_y = np.array([0.0, 4.0, -3.5], np.float32), np.array([2.0, -1.0, 4.8], np.float32)
    rows = np.asarray(transform_rows(keras.ops.convert_to_tensor(angles), keras.ops.convert_to_tensor(shift_x),
                                     keras.ops.convert_to_tensor(shift_y), size))
    expected = transforms_for(tf.constant(angles), tf.constant(shift_x), tf.constant(shift_y), size).numpy()
    np.testing.assert_allclose(rows, expected, atol=1e-5)
    images = np.random.default_rng(0).uniform(0, 255, (3, size, size, 1)).astype(np.float32)
    ours = np.asarray(keras.ops.image.affine_transform(images, rows, interpolation="bilinear", fill_mode="constant",
                                                       fill_value=0, data_format="channels_last"))
    theirs = apply_transforms(tf.constant(images), tf.constant(expected)).numpy()
    assert np.abs(ours - theirs).max() < 1e-2  # float32 resampling of 0..255 values


def test_rotate_shift_is_the_identity_at_inference_and_fills_black_while_training():
    from cxrbio.config import AugmentConfig
    from cxrbio.models.augment import rotate_shift

    layer = rotate_shift(AugmentConfig(), seed=3)
    flat = np.full((16, 64, 64, 1), 200.0, np.float32)
    np.testing.assert_array_equal(np.asarray(layer(flat, training=False)), flat)
    moved = np.asarray(layer(flat, training=True))
    assert moved.max() <= 200.0 + 1e-3  # nothing brighter appears
    assert moved.min() == 0.0  # the padding is black (reflect or nearest would keep 200 everywhere)
    assert 0.5 < (moved > 199).mean() < 0.99  # most of the image is kept


def test_rotate_shift_draws_are_reseeded_per_epoch_and_survive_saving(tmp_path):
    """reseed_generators (every epoch) sets the layer's draw: a resumed epoch repeats it; the layer reloads."""
    from cxrbio.config import AugmentConfig
    from cxrbio.models.augment import RotateShift, rotate_shift
    from cxrbio.models.surgery import reseed_generators

    inputs = keras.Input((32, 32, 1))
    model = keras.Model(inputs, rotate_shift(AugmentConfig(), seed=0)(inputs))
    x = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 1)).astype(np.float32)
    reseed_generators(model, 11)
    first = np.asarray(model(x, training=True))
    reseed_generators(model, 11)
    np.testing.assert_array_equal(np.asarray(model(x, training=True)), first)
    reseed_generators(model, 12)
    assert not np.allclose(np.asarray(model(x, training=True)), first)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    layer = next(layer for layer in loaded.layers if isinstance(layer, RotateShift))
    assert (layer.rotation_degrees, layer.shift_pixels, layer.reference_size) == (10.0, 20.0, 200)


def test_array_batches_give_the_tf_data_batches():
    from cxrbio.data.batches import ArrayBatches
    from cxrbio.data.input_pipeline import make_dataset

    images = np.random.default_rng(2).integers(0, 256, (23, 16, 16), dtype=np.uint8)
    rows, labels = np.arange(3, 23), np.arange(20) % 4
    ours = ArrayBatches(images, rows, labels, 8)
    assert len(ours) == 3
    for (x, y), (tx, ty) in zip((ours[i] for i in range(len(ours))), make_dataset(images, rows, labels, 8, training=False)):
        np.testing.assert_array_equal(x, tx.numpy())
        np.testing.assert_array_equal(y, ty.numpy())
    shuffled = ArrayBatches(images, rows, labels, 8, shuffle_seed=5)
    seen = np.concatenate([shuffled[i][1] for i in range(len(shuffled))])
    assert sorted(seen.tolist()) == sorted(labels.tolist()) and not np.array_equal(seen, labels)
    again = ArrayBatches(images, rows, labels, 8, shuffle_seed=5)
    np.testing.assert_array_equal(np.concatenate([again[i][1] for i in range(3)]), seen)
    with pytest.raises(IndexError):
        ours[3]


def test_a_fold_started_on_another_backend_is_not_resumed_here(scanned_tiny, tmp_path):
    from cxrbio.errors import ConfigError
    from cxrbio.training.data import load_training_data
    from cxrbio.training.fold_trainer import FoldTrainer
    from tests.helpers import copy_run

    cfg = tiny_config()
    run = copy_run(scanned_tiny, tmp_path / "run")
    data = load_training_data(run, cfg)
    trainer = FoldTrainer(run, cfg, data, "scratch", data.folds[0])
    trainer.out.mkdir(parents=True, exist_ok=True)
    state = {"fingerprint": trainer.expected.fingerprint, "keras_backend": "jax", "next_epoch": 1}
    (trainer.out / "state.json").write_text(json.dumps(state))
    with pytest.raises(ConfigError, match="started on the jax backend"):
        trainer._state()
    assert (trainer.out / "state.json").is_file()  # nothing is deleted behind the user's back


#: Runs in a child process on KERAS_BACKEND=jax with TensorFlow, pyradiomics, SimpleITK, Ray and shap
#: made unimportable (as on a machine that has only JAX): scan, train (2 folds), embed a tiny phantom.
JAX_CHILD = textwrap.dedent("""
    import json, sys
    BLOCKED = {"tensorflow", "radiomics", "SimpleITK", "ray", "shap"}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, Blocker())
    from pathlib import Path
    from tests.helpers import scanned, tiny_config
    from cxrbio.stages import embed, train

    phantom, root = Path(sys.argv[1]), Path(sys.argv[2])
    cfg = tiny_config(train__epochs=2, folds__k=2)
    run = scanned(phantom, root, cfg)
    train.run(run.root)
    embed.run(run.root)
    import keras
    print(json.dumps({"backend": keras.backend.backend(),
                      "imported": sorted(m for m in BLOCKED if m in sys.modules)}))
""")


@pytest.mark.slow
def test_jax_backend_trains_and_embeds_without_tensorflow_and_its_models_load_on_tensorflow(phantom_dir, tmp_path):
    pytest.importorskip("jax", reason="the JAX backend is an extra: uv sync --extra jax")
    root = tmp_path / "run"
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'src'}"}
    done = subprocess.run([sys.executable, "-c", JAX_CHILD, str(phantom_dir), str(root)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"backend": "jax", "imported": []}
    summaries = sorted((root / "train" / "scratch").glob("fold-*/summary.json"))
    assert len(summaries) == 2 and all(json.loads(p.read_text())["keras_backend"] == "jax" for p in summaries)
    assert len(list((root / "embeddings" / "scratch").glob("fold-*.parquet"))) == 2
    # The JAX-trained network, augmentation layer included, loads and predicts here on TensorFlow.
    from cxrbio.models.layers import AUGMENT_LAYER
    from cxrbio.models.saving import load_model

    model = load_model(summaries[0].parent / "model.keras", compile=False)
    assert model.get_layer(AUGMENT_LAYER) is not None
    probabilities = np.asarray(model.predict(np.zeros((2, 32, 32, 1), np.float32), verbose=0))
    assert probabilities.shape == (2, 7) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


def test_analyze_says_it_needs_tensorflow_on_another_backend(tmp_path, monkeypatch):
    from cxrbio.errors import ConfigError
    from cxrbio.stages import analyze

    monkeypatch.setenv("KERAS_BACKEND", "jax")
    with pytest.raises(ConfigError, match="needs the TensorFlow backend") as caught:
        analyze.run(tmp_path / "no-run")
    assert "KERAS_BACKEND=tensorflow" in caught.value.fix

"""MobileNetV2 + head: block definition, trainable layers per strategy, weight sources."""

from pathlib import Path

import numpy as np
import pytest

from cxrbio.config import ModelConfig
from cxrbio.errors import ConfigError
from cxrbio.models.blocks import block_index, in_top_blocks
from cxrbio.models.mobilenet import build_model
from cxrbio.models.strategies import Strategy
from cxrbio.models.weights import WeightsUnavailable, imagenet_file_name, load_backbone

keras = pytest.importorskip("keras")
SIZE = 48


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    """A MobileNetV2 (alpha 0.35) weights file made here: Keras cannot download ImageNet weights offline."""
    keras.utils.set_random_seed(123)
    backbone = load_backbone(SIZE, 0.35, None)
    path = tmp_path_factory.mktemp("weights") / "backbone.weights.h5"
    backbone.save_weights(path)
    return path


def config(weights: Path | str = "imagenet", **kw) -> ModelConfig:
    return ModelConfig(alpha=0.35, dense_units=16, dropout=0.5, weights=str(weights), **kw)


def backbone_of(model):
    return model.get_layer("mobilenetv2")


def test_block_definition():
    assert block_index("Conv1") is None and block_index("bn_Conv1") is None
    assert block_index("expanded_conv_depthwise") == 0
    assert block_index("block_7_add") == 7
    assert block_index("Conv_1") == 16 and block_index("out_relu") == 16  # counted with the top block
    assert in_top_blocks("Conv_1", 1) and in_top_blocks("block_16_project", 1)
    assert not in_top_blocks("block_15_project", 1) and in_top_blocks("block_15_project", 2)
    assert in_top_blocks("expanded_conv_project", 17) and not in_top_blocks("Conv1", 17)


def test_strategy_names():
    assert Strategy.parse("finetune-11") == Strategy("finetune-11", True, 11)
    assert Strategy.parse("scratch").pretrained is False
    with pytest.raises(ConfigError, match="unknown strategy"):
        Strategy.parse("finetune")


def trainable_layer_names(model):
    return {layer.name for layer in backbone_of(model).layers if layer.trainable_weights}


def test_offshelf_trains_only_the_head(weights_file):
    model = build_model(7, SIZE, config(weights_file), Strategy.parse("offshelf"))
    assert trainable_layer_names(model) == set()
    head = {w.path.split("/")[0] for w in model.trainable_weights}
    assert head == {"head_dense", "head_bn", "head_softmax"}


def test_finetune_n_trains_exactly_the_top_n_blocks(weights_file):
    one = build_model(7, SIZE, config(weights_file), Strategy.parse("finetune-1"))
    assert trainable_layer_names(one) == {"block_16_expand", "block_16_depthwise", "block_16_project", "Conv_1"}
    three = trainable_layer_names(build_model(7, SIZE, config(weights_file), Strategy.parse("finetune-3")))
    assert {block_index(n) for n in three} == {14, 15, 16}
    assert not any("BN" in n or n.endswith("_bn") for n in three)  # BatchNorm frozen by default
    trained_bn = trainable_layer_names(build_model(7, SIZE, config(weights_file, finetune_batchnorm="train"),
                                                   Strategy.parse("finetune-3")))
    assert "block_16_project_BN" in trained_bn and "Conv_1_bn" in trained_bn and "block_13_project_BN" not in trained_bn
    counts = [len(build_model(7, SIZE, config(weights_file), Strategy.parse(f"finetune-{n}")).trainable_weights)
              for n in (1, 5, 11, 17)]
    assert counts == sorted(counts) and len(set(counts)) == 4


def test_scratch_trains_everything_from_random_weights(weights_file):
    model = build_model(7, SIZE, config(weights_file), Strategy.parse("scratch"))
    backbone = backbone_of(model)
    assert all(layer.trainable for layer in backbone.layers)
    loaded = load_backbone(SIZE, 0.35, str(weights_file))
    assert not np.allclose(backbone.get_layer("Conv1").get_weights()[0], loaded.get_layer("Conv1").get_weights()[0])


@pytest.mark.slow  # trains a network
def test_offshelf_backbone_and_batchnorm_do_not_change_in_training(weights_file):
    model = build_model(3, SIZE, config(weights_file), Strategy.parse("offshelf"))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    bn = backbone_of(model).get_layer("block_16_project_BN")
    before_stats = [w.copy() for w in bn.get_weights()]
    before_conv = backbone_of(model).get_layer("Conv_1").get_weights()[0].copy()
    before_head = model.get_layer("head_dense").get_weights()[0].copy()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, SIZE, SIZE, 1)).astype("float32")
    model.fit(x, rng.integers(0, 3, 8), epochs=2, batch_size=4, verbose=0)
    for old, new in zip(before_stats, bn.get_weights()):
        np.testing.assert_array_equal(old, new)  # moving mean/variance too: inference mode
    np.testing.assert_array_equal(before_conv, backbone_of(model).get_layer("Conv_1").get_weights()[0])
    assert not np.allclose(before_head, model.get_layer("head_dense").get_weights()[0])


def test_weights_file_round_trip(weights_file):
    keras.utils.set_random_seed(123)
    reference = load_backbone(SIZE, 0.35, None)
    model = build_model(7, SIZE, config(weights_file), Strategy.parse("finetune-3"))
    for a, b in zip(reference.get_weights(), backbone_of(model).get_weights()):
        np.testing.assert_array_equal(a, b)


def test_model_io_shapes_and_gap_layer(weights_file):
    model = build_model(7, SIZE, config(weights_file), Strategy.parse("offshelf"))
    out = model.predict(np.zeros((2, SIZE, SIZE, 1), "float32"), verbose=0)
    assert out.shape == (2, 7) and np.allclose(out.sum(axis=1), 1.0, atol=1e-5)
    assert model.get_layer("gap").output.shape[-1] == 1280  # alpha < 1 keeps the last conv at 1280


def test_missing_or_mismatched_weights_file(weights_file, tmp_path):
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        load_backbone(SIZE, 0.35, str(tmp_path / "nope.h5"))
    with pytest.raises(WeightsUnavailable, match="does not fit MobileNetV2 with alpha 0.5"):
        load_backbone(SIZE, 0.5, str(weights_file))


def test_unreachable_imagenet_weights_name_the_remedies():
    cached = Path.home() / ".keras" / "models" / imagenet_file_name(0.35, 96)
    if cached.exists():
        pytest.skip("ImageNet weights are cached on this machine; the offline failure cannot be shown")
    with pytest.raises(WeightsUnavailable) as info:
        load_backbone(96, 0.35, "imagenet")
    assert imagenet_file_name(0.35, 96) in info.value.fix and "--skip-unavailable" in info.value.fix


def test_backbone_from_an_earlier_run(tmp_path, weights_file):
    from cxrbio.models.weights import load_backbone

    model = build_model(7, SIZE, config(weights_file), Strategy.parse("finetune-3"), seed=5)
    target = tmp_path / "earlier" / "train" / "scratch" / "fold-1" / "model.keras"
    target.parent.mkdir(parents=True)
    model.save(target)
    loaded = load_backbone(SIZE, 0.35, f"run:{tmp_path / 'earlier'}/scratch/fold-1")
    for a, b in zip(backbone_of(model).get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(WeightsUnavailable, match="no trained model"):
        load_backbone(SIZE, 0.35, f"run:{tmp_path / 'earlier'}/scratch")  # fold 0 does not exist
    with pytest.raises(WeightsUnavailable, match="does not fit"):
        load_backbone(SIZE, 0.5, f"run:{tmp_path / 'earlier'}/scratch/fold-1")

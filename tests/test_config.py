from pathlib import Path

import pytest

from cxrbio.config import Config, load_config
from cxrbio.errors import ConfigError
from cxrbio.evaluation.paper import PAPER_CLASSES
from cxrbio.run.runconfig import save_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_paper_yaml_is_the_published_protocol():
    cfg = load_config(CONFIGS / "paper.yaml")
    assert tuple(cfg.data.classes) == PAPER_CLASSES
    assert cfg.data.image_size == 200
    assert cfg.folds.k == 10
    assert cfg.model.alpha == 1.0 and cfg.model.dense_units == 2500 and cfg.model.dropout == 0.5
    assert cfg.augment.rotation_degrees == 10 and cfg.augment.shift_pixels == 20
    assert cfg.train.strategies == ["offshelf", "finetune-1", "finetune-3", "finetune-5", "finetune-7",
                                    "finetune-9", "finetune-11", "scratch"]
    # Defaults equal the published protocol, so no config at all means the paper.
    assert load_config(None) == cfg


def test_paper_yaml_marks_every_unstated_training_value_as_assumption():
    text = (CONFIGS / "paper.yaml").read_text()
    for key in ("optimizer", "learning_rate", "batch_size", "epochs", "early_stopping_patience"):
        line = next(line for line in text.splitlines() if line.strip().startswith(f"{key}:"))
        assert "ASSUMPTION" in line, key


def test_demo_yaml_is_small():
    cfg = load_config(CONFIGS / "demo.yaml")
    assert cfg.model.alpha == 0.35 and cfg.data.image_size <= 128 and cfg.folds.k <= 5


def test_unknown_key_names_key_and_allowed(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "unknown key 'train.epoch'" in info.value.message
    assert "epochs" in info.value.message  # the allowed keys are listed


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("train:\n  epochs: 0\n", "'train.epochs'"),
        ("train:\n  strategies: [scratch, finetune-40]\n", "unknown strategy 'finetune-40'"),
        ("model:\n  alpha: 0.6\n", "alpha must be one of"),
        ("data:\n  cache: gpu\n", "'data.cache'"),
        ("data:\n  positive_class: SARS\n", "positive_class 'SARS'"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("train: [\n", "not valid YAML"),
    ],
)
def test_bad_values_are_named(tmp_path, yaml_text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert expected in info.value.message
    assert str(path) in info.value.message


def test_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("no/such/config.yaml")


def test_round_trip_writes_every_default(tmp_path):
    cfg = load_config(None, {"folds.k": 4})
    save_config(cfg, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert "near_duplicate_max_distance" in text and "learning_rate" in text
    assert load_config(tmp_path / "config.yaml") == cfg


def test_label_matching_ignores_case_and_uses_aliases():
    data = Config().data
    assert data.canonical_label("covid19") == "COVID-19"
    assert data.canonical_label("PNEUMONIA") == "Pneumonia"
    assert data.canonical_label("No Finding") == "Normal"
    assert data.canonical_label("COPD") == "Emphysema"
    assert data.canonical_label("Atelectasis") is None


def test_retired_audit_keys_get_an_error_that_names_them_and_the_new_margin():
    with pytest.raises(ConfigError, match="analysis.border_fraction is retired.*shortcut_margin"):
        load_config(None, {"analysis.border_fraction": 0.1})


def test_the_judged_checks_of_the_tests_are_the_config_defaults():
    from tests.helpers import JUDGED_CHECKS

    defaults = load_config(None).confounding
    assert JUDGED_CHECKS == {"confounding.permutations": defaults.permutations,
                             "confounding.forest_trees": defaults.forest_trees}

"""The structured config: Hydra overrides, presets, config files, and one-line errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harp.config import all_keys, from_dict, load_config, to_dict, to_yaml
from harp.errors import ConfigError


def test_defaults_pick_the_synthetic_preset_with_its_flip_swaps() -> None:
    cfg = load_config()
    assert cfg.data.format == "synthetic"
    assert cfg.data.flip == "swap"
    assert cfg.data.flip_swap["move_left"] == "move_right"


def test_group_preset_and_value_overrides_compose() -> None:
    cfg = load_config(["data=ucf101", "data.root=/data/UCF-101", "optim.lr=0.02", "model.family=c3d"])
    assert (cfg.data.format, cfg.data.root) == ("ucf101", "/data/UCF-101")
    assert cfg.data.flip_swap == {}  # the synthetic preset's swaps do not leak into UCF101
    assert cfg.optim.lr == pytest.approx(0.02)
    assert cfg.model.family == "c3d"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.fromat=ucf101", "unknown config key 'data.fromat'; valid keys under data: format"),
        ("bogus=1", "unknown config key 'bogus'"),
        ("optim.lr=fast", "optim.lr='fast' is not a valid float"),
        ("data=ucf", "unknown data preset 'ucf'"),
        ("optim.name=lion", "optim.name='lion' is not valid; choose one of: sgd, adam, adamw"),
        ("train.epochs=0", "train.epochs=0 must be > 0"),
        ("model.options.depth=3", "+model.options.depth=VALUE"),
    ],
)
def test_bad_input_gives_one_line_naming_key_and_fix(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config([override])
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_an_unknown_model_family_gives_one_line_listing_the_families() -> None:
    # The family is checked by the model registry (the config layer does not import the models);
    # `harp config` calls that check, so the command still fails with one line.
    from harp.models.registry import check_family

    check_family(load_config(["model.family=c3d"]).model.family)
    with pytest.raises(ConfigError) as info:
        check_family(load_config(["model.family=resnet9000"]).model.family)
    assert "unknown model family 'resnet9000'; choose one of: timesformer" in str(info.value)
    assert "\n" not in str(info.value)


def test_mapping_keys_accept_new_entries_with_plus() -> None:
    cfg = load_config(["+model.options.depth=18"])
    assert cfg.model.options == {"depth": 18}


def test_yaml_round_trip_reproduces_the_config(tmp_path: Path) -> None:
    cfg = load_config(["model.family=tsm", "optim.name=sgd", "optim.lr=0.0035", "sampling.method=equidistant"])
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(cfg))
    again = load_config(config_file=path)
    assert again == cfg
    # overrides still apply on top of a file
    assert load_config(["optim.lr=0.1"], config_file=path).optim.lr == pytest.approx(0.1)
    assert from_dict(to_dict(cfg)) == cfg


def test_config_file_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(config_file=tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {family: c3d\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(config_file=bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("model: {famly: c3d}\n")
    with pytest.raises(ConfigError, match="unknown config key 'model.famly'"):
        load_config(config_file=typo)


def test_all_keys_lists_nested_keys() -> None:
    keys = all_keys()
    assert {"optim.lr", "data.synth.num_classes", "sweep.searcher", "model.pretrained"} <= set(keys)


def test_cli_prints_one_line_error_and_exit_code_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harp.cli", "config", "optim.lr=fast"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "harp config: error: optim.lr='fast' is not a valid float; fix the value"
    unknown = subprocess.run([sys.executable, "-m", "harp.cli", "nope"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "unknown command 'nope'" in unknown.stderr

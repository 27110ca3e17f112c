"""Hydra's command-line habits on harp's config: ~, +, ++, quoting, and what harp refuses."""
from __future__ import annotations

from pathlib import Path

import pytest

from harp.cli import main as harp
from harp.config import load_config
from harp.config.schema import HarpConfig
from harp.errors import ConfigError


def one_line_error(overrides: list[str], **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(overrides, **kwargs)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_tilde_resets_a_key_to_its_schema_default(tmp_path: Path) -> None:
    default = HarpConfig()
    assert load_config(["optim.lr=0.5", "~optim.lr"]).optim.lr == pytest.approx(default.optim.lr)
    path = tmp_path / "c.yaml"
    path.write_text("optim: {lr: 0.5, name: sgd}\n")
    cfg = load_config(["~optim.lr"], config_file=path)
    assert cfg.optim.lr == pytest.approx(default.optim.lr) and cfg.optim.name == "sgd"
    assert load_config(["~optim"], config_file=path).optim == default.optim
    # the schema's default, not the synthetic preset's
    assert load_config(["~data.flip_swap"]).data.flip_swap == {}
    assert load_config(["optim.lr=0.5", "~optim.lr=0.5"]).optim.lr == pytest.approx(default.optim.lr)
    assert "optim.lr is 0.5, not 0.1" in one_line_error(["optim.lr=0.5", "~optim.lr=0.1"])
    assert "unknown config key 'optim.lrr'" in one_line_error(["~optim.lrr"])


def test_tilde_removes_an_open_mapping_entry() -> None:
    cfg = load_config(["+model.options.depth=18", "+model.options.width=4", "~model.options.depth"])
    assert cfg.model.options == {"width": 4}
    assert "model.options.depth is not set" in one_line_error(["~model.options.depth"])


def test_plus_adds_only_under_open_mappings() -> None:
    assert load_config(["+data.flip_swap.up=down"]).data.flip_swap["up"] == "down"
    assert "drop the plus" in one_line_error(["+model.options.depth=1", "+model.options.depth=2"])
    assert "optim.lr is already a config key; set it without the plus, optim.lr=VALUE" in one_line_error(["+optim.lr=0.1"])
    assert "unknown config key 'bogus'" in one_line_error(["+bogus=1"])


def test_double_plus_sets_or_adds() -> None:
    cfg = load_config(["++model.options.depth=3", "++model.options.depth=5", "++optim.lr=0.25"])
    assert cfg.model.options == {"depth": 5} and cfg.optim.lr == pytest.approx(0.25)
    assert "unknown config key 'optim.bogus'" in one_line_error(["++optim.bogus=1"])


def test_values_parse_as_hydra_users_expect() -> None:
    cfg = load_config([
        "data.root='/videos/with space'",
        "optim.milestones=[3,6]",
        "model.options={depth:18,mode:fast}",
        "sweep.objectives=[gflops:min]",
        "optim.warmup_epochs=${optim.gamma}",
        "model.pretrained=hf:org/repo",
        "model.frames=null",
    ])
    assert cfg.data.root == "/videos/with space"
    assert cfg.optim.milestones == [3, 6]
    assert cfg.model.options == {"depth": 18, "mode": "fast"}
    assert cfg.sweep.objectives == ["gflops:min"]
    assert cfg.optim.warmup_epochs == pytest.approx(cfg.optim.gamma)
    assert cfg.model.pretrained == "hf:org/repo" and cfg.model.frames is None
    assert "write key=value" in one_line_error(["optim.lr"])
    assert "optim.milestones[1]='x' is not a valid integer" in one_line_error(["optim.milestones=[1,x]"])
    assert "optim.milestones={'a': 1} is not a list" in one_line_error(["optim.milestones={a:1}"])
    assert "optim=3: optim is a section; set its keys instead" in one_line_error(["optim=3"])


@pytest.mark.parametrize(
    "override",
    ["optim.lr=choice(0.1,0.01)", "optim.lr=0.1,0.01", "optim.lr=range(1,3)", "optim.lr=interval(0.001,0.1)", "optim.lr=glob(*)"],
)
def test_a_hydra_sweep_points_to_harp_sweep(override: str) -> None:
    text = one_line_error([override])
    assert text.startswith(f"`{override}` is a Hydra sweep; use `harp sweep` with a search space (params: optim.lr: {{type: ")


def test_hydra_job_settings_are_refused() -> None:
    for override in ("hydra.run.dir=/tmp/x", "hydra/launcher=joblib", "-m", "--multirun"):
        assert "harp does not run Hydra jobs" in one_line_error([override])
    assert "no packages" in one_line_error(["data@foo=ucf101"])


def test_layers_stack_schema_preset_file_layer_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data: hmdb51\noptim: {lr: 0.5, name: sgd}\ntrain.epochs: 7\n")
    cfg = load_config(config_file=path)
    assert (cfg.data.format, cfg.data.root, cfg.optim.lr, cfg.train.epochs) == ("hmdb51", "data/hmdb51", 0.5, 7)
    cfg = load_config(["optim.lr=0.1"], config_file=path, layer={"data": "ucf101", "optim.lr": 0.2, "optim.momentum": 0.5})
    assert (cfg.data.format, cfg.optim.name, cfg.optim.momentum, cfg.optim.lr) == ("ucf101", "sgd", 0.5, 0.1)
    assert load_config(["data=kinetics"], layer={"data": "ucf101"}).data.format == "kinetics"


def test_harp_config_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert harp(["config", "model.family=tsm", "optim.lr=0.01"]) == 0
    plain = capsys.readouterr().out
    assert "family: tsm" in plain and "lr: 0.01" in plain
    assert harp(["config", "--cfg", "job", "model.family=tsm", "optim.lr=0.01"]) == 0
    assert capsys.readouterr().out == plain
    path = tmp_path / "job.yaml"
    path.write_text(plain)
    assert harp(["config", "--config", str(path)]) == 0
    assert capsys.readouterr().out == plain
    for argv, message in (
        (["config", "model.family=foo"], "harp config: error: unknown model family 'foo'; choose one of: timesformer"),
        (["config", "optim.name=foo"], "harp config: error: optim.name='foo' is not valid; choose one of: sgd, adam, adamw"),
        (["config", "-m", "optim.lr=0.1"], "harp config: error: harp does not run Hydra jobs"),
    ):
        assert harp(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1

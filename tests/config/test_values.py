"""Allowed values defined once (StrEnums in the schema), plain strings in every plain-data form,
and config layering without temporary files."""
from __future__ import annotations

import enum
import json
import tempfile
from pathlib import Path

import pytest
import yaml

from harp.config import from_dict, load_config, schema, to_dict, to_yaml
from harp.config.keys import all_keys, key_type
from harp.errors import ConfigError

ENUM_KEYS = (
    "data.format", "data.val_strategy", "data.flip", "data.decode_backend", "data.short_video", "sampling.method",
    "model.size", "optim.name", "optim.schedule", "train.precision", "wandb.mode", "sweep.searcher",
    "sweep.scheduler", "sweep.mode",
)


def test_every_enumerated_key_is_typed_by_a_choice_whose_names_are_its_values() -> None:
    for key in ENUM_KEYS:
        kind = key_type(key)
        assert isinstance(kind, type) and issubclass(kind, schema.Choice), key
    for kind in schema.Choice.__subclasses__():
        # OmegaConf parses an enum from its name and writes the name back: they must be the value
        assert [m.name for m in kind] == [m.value for m in kind], kind
    assert [k for k in all_keys() if isinstance(key_type(k), type) and issubclass(key_type(k), enum.Enum)] == list(ENUM_KEYS)


def test_enum_values_still_read_as_strings() -> None:
    cfg = load_config(["optim.name=sgd", "sweep.mode=min"])
    assert cfg.optim.name == "sgd" and cfg.optim.name != "adam"
    assert f"{cfg.optim.name} {cfg.sweep.mode}" == "sgd min" and str(cfg.optim.name) == "sgd"
    assert {"sgd": 1}[cfg.optim.name] == 1 and cfg.optim.name in ("sgd", "adam")
    assert repr(cfg.model.size) == "'tiny'"  # messages built with !r read as before


def _has_enum(value: object) -> bool:
    if isinstance(value, dict):
        return any(_has_enum(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_enum(v) for v in value)
    return isinstance(value, enum.Enum)


def test_plain_data_and_yaml_hold_plain_strings(tmp_path: Path) -> None:
    cfg = load_config(["model.family=tsm", "optim.name=sgd", "optim.schedule=step", "train.precision=bf16", "data=ucf101"])
    data = to_dict(cfg)
    assert not _has_enum(data)
    assert type(data["optim"]["name"]) is str and data["optim"]["name"] == "sgd"
    yaml.safe_dump(data)  # PyYAML's safe dumper refuses enum objects
    json.dumps(data)
    text = to_yaml(cfg)
    assert "name: sgd" in text and "precision: bf16" in text
    assert yaml.safe_load(text) == data
    assert from_dict(json.loads(json.dumps(data))) == cfg
    path = tmp_path / "config.yaml"
    path.write_text(text)
    again = load_config(config_file=path)
    assert again == cfg
    assert again.data.flip_swap == {}  # the default synthetic preset's swaps do not leak into a UCF101 file


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("optim: {name: lion}\n", "optim.name='lion' is not valid; choose one of: sgd, adam, adamw"),
        ("sweep: {searcher: bayes}\n", "sweep.searcher='bayes' is not valid; choose one of: tpe, random, grid, cmaes, nsga2"),
        ("train: {epochs: many}\n", "train.epochs='many' is not a valid integer"),
        ("data: nope\n", "unknown data preset 'nope'"),
        ("optim: 3\n", "optim=3: optim is a section; set its keys instead, e.g. optim.name=VALUE"),
        ("optim: {milestones: {a: 1}}\n", "optim.milestones={'a': 1} is not a list"),
        ("optim: {lr: '${optim.nope}'}\n", "optim.lr: its ${...} interpolation cannot be resolved"),
    ],
)
def test_a_bad_value_in_a_file_gives_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_config(config_file=path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_layering_writes_no_temporary_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("optim: {name: sgd}\n")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("config layering must not write temporary files")

    for name in ("mkdtemp", "mkstemp", "TemporaryDirectory", "NamedTemporaryFile", "TemporaryFile"):
        monkeypatch.setattr(tempfile, name, refuse)
    cfg = load_config(["optim.lr=0.02", "data=ucf101"], config_file=path, layer={"train.epochs": 3})
    assert (cfg.optim.name, cfg.optim.lr, cfg.train.epochs, cfg.data.format) == ("sgd", 0.02, 3, "ucf101")
    assert from_dict(to_dict(cfg)) == cfg

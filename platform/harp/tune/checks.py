"""What a sweep is checked for before anything starts (no data, no Ray): a space that varies
something, metrics that trials report, a name that stays inside ``sweep.output_dir``.

Without these checks a params-less space ran the defaults as a "sweep", a misspelt metric failed
every trial after its first epoch with a Ray traceback, and ``sweep.name=../../x`` wrote outside
the output directory. Ray-free, so ``harp sweep`` refuses a bad sweep in a second.
"""
from __future__ import annotations

from harp.config.schema import HarpConfig
from harp.errors import ConfigError
from harp.tune.params import SearchSpace
from harp.tune.sweep_dir import check_sweep_name
from harp.tune.trial import COST_METRICS


def check_space(space: SearchSpace) -> None:
    """A sweep varies at least one key (an empty or params-less space file is a mistake)."""
    if not space.params:
        raise ConfigError(
            f"{space.where}: the search space has no params; a sweep varies at least one key, e.g. "
            "params: {optim.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-1}}"
        )


def check_metrics(cfg: HarpConfig) -> None:
    """``sweep.metric`` and ``sweep.objectives`` name metrics a trial reports: the loop's per-epoch
    metrics, and for objectives also the costs the trainable measures (``COST_METRICS``)."""
    from harp.train.loop import REPORTED_METRICS  # torch: imported once a sweep is checked

    reported = [m for m in REPORTED_METRICS if m != "epoch"]
    if cfg.sweep.metric not in reported:
        raise ConfigError(f"sweep.metric={cfg.sweep.metric!r} is not a metric trials report; choose one of: {', '.join(reported)}")
    for entry in cfg.sweep.objectives:  # NAME:min|max; the searcher checks the direction
        name = str(entry).partition(":")[0]
        if name not in (*reported, *COST_METRICS):
            raise ConfigError(
                f"sweep.objectives entry {entry!r} is not a metric trials report; choose from: "
                f"{', '.join((*reported, *COST_METRICS))}"
            )


def check_sweep(cfg: HarpConfig, space: SearchSpace) -> None:
    """Every check above, plus ``sweep.name`` when it is set."""
    check_space(space)
    check_metrics(cfg)
    if cfg.sweep.name:
        check_sweep_name(cfg.sweep.name)


__all__ = ["check_metrics", "check_space", "check_sweep"]

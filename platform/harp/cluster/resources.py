"""What one trial asks the cluster for, checked against its nodes before Tune starts.

A trial's demand (``harp.tune.trial``): a 1-worker trial trains in its own process and reserves one
bundle ``{CPU: sweep.cpus_per_trial, GPU: sweep.gpus_per_trial}``; an N-worker trial's process
reserves nothing and its TorchTrainer reserves N bundles of ``{CPU: cpus/N, GPU: gpus/N}``
(Ray Train packs them, spreading over nodes when one is not enough).

Ray queues a demand that no node can ever hold and waits for the autoscaler: on a fixed cluster
the sweep hangs with every trial PENDING. ``check_trials_fit`` turns that into one line at
submission, naming the key and the largest node. Nodes the autoscaler may still add are counted
when their resources are declared (``available_node_types.*.resources`` in ``cluster.yaml``,
read from ``~/ray_bootstrap_config.yaml`` on the head).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harp.config.schema import HarpConfig
from harp.errors import ConfigError

BOOTSTRAP_CONFIG = Path.home() / "ray_bootstrap_config.yaml"  # where `ray up` puts the autoscaler's config on the head


class _Param(Protocol):  # harp.tune.params.Param, without importing harp.tune
    @property
    def key(self) -> str: ...

    @property
    def values(self) -> tuple[Any, ...]: ...

    @property
    def step(self) -> int | None: ...

    @property
    def is_choice(self) -> bool: ...

    @property
    def bounds(self) -> tuple[float, float]: ...


@dataclass(frozen=True)
class TrialDemand:
    """The placement-group bundles of one trial with ``workers`` training workers."""

    workers: int
    bundle: dict[str, float]  # one bundle (the trial's own, or one TorchTrainer worker's)
    count: int  # how many such bundles

    @property
    def total(self) -> dict[str, float]:
        return {k: v * self.count for k, v in self.bundle.items()}


def worker_counts(params: Iterable[_Param], default: int) -> list[int]:
    """Every value ``train.num_workers`` can take in a sweep (the fixed one when it does not vary)."""
    found: set[int] = set()
    for param in params:
        if param.key != "train.num_workers":
            continue
        if param.is_choice:
            found.update(int(v) for v in param.values)
        else:
            low, high = param.bounds
            found.update(range(int(low), int(high) + 1, int(param.step or 1)))
    return sorted(found) or [int(default)]


def trial_demand(cfg: HarpConfig, workers: int) -> TrialDemand:
    """The bundles a trial with ``workers`` workers reserves (``harp.tune.trial`` and
    ``harp.train.ray_train.scaling_config`` make exactly these)."""
    cpus, gpus = float(cfg.sweep.cpus_per_trial), float(cfg.sweep.gpus_per_trial)
    if workers <= 1:
        bundle = {"CPU": cpus, "GPU": gpus}
        return TrialDemand(1, {k: v for k, v in bundle.items() if v > 0}, 1)
    bundle = {"CPU": max(0.01, cpus / workers), "GPU": gpus / workers}
    return TrialDemand(workers, {k: v for k, v in bundle.items() if v > 0}, workers)


def _fits(bundle: Mapping[str, float], node: Mapping[str, float]) -> int:
    """How many copies of ``bundle`` one node holds."""
    counts = [math.floor(node.get(k, 0.0) / v + 1e-9) for k, v in bundle.items() if v > 0]
    return min(counts) if counts else 1


def _gpu_shape(cfg: HarpConfig, demand: TrialDemand) -> None:
    gpus = demand.bundle.get("GPU", 0.0)
    if gpus > 1 and not float(gpus).is_integer():
        raise ConfigError(
            f"sweep.gpus_per_trial={cfg.sweep.gpus_per_trial:g} gives {'each worker ' if demand.workers > 1 else 'a trial '}{gpus:g} GPUs: "
            "Ray accepts fractions of one GPU only; use a whole number of GPUs (or less than one)"
        )
    if demand.workers > 1 and 0 < gpus < 1:
        raise ConfigError(
            f"sweep.gpus_per_trial={cfg.sweep.gpus_per_trial:g} over train.num_workers={demand.workers} gives each DDP worker "
            f"{gpus:g} GPU: NCCL cannot run two ranks on one GPU; set sweep.gpus_per_trial to a multiple of train.num_workers"
        )


def check_trials_fit(cfg: HarpConfig, workers: Sequence[int], nodes: Sequence[Mapping[str, float]]) -> None:
    """Refuse, in one line, a trial that no node (or, for N workers, the cluster) can ever hold.

    ``workers``: the values ``train.num_workers`` takes (``worker_counts``); ``nodes``: each
    node's total resources (``node_capacities()``). Call before ``Tuner.fit``."""
    if not nodes:
        raise ConfigError("the Ray cluster has no live node; start one (ray start / ray up) before the sweep")
    for count in workers:
        demand = trial_demand(cfg, count)
        _gpu_shape(cfg, demand)
        holds = [_fits(demand.bundle, node) for node in nodes]
        if sum(holds) >= demand.count:
            continue
        key, amount = _blocking(cfg, demand, nodes)
        largest = max(float(node.get(amount, 0.0)) for node in nodes)
        unit = "GPUs" if amount == "GPU" else "CPUs"
        value = getattr(cfg.sweep, key.split(".")[1])
        sizes = f"the largest of its {len(nodes)} node{'s' if len(nodes) != 1 else ''} has {largest:g}"
        if count <= 1:
            problem = f"asks {demand.bundle.get(amount, 0.0):g} {unit} for one trial, but no node has that many ({sizes})"
        else:
            problem = (f"over train.num_workers={count} asks {demand.bundle.get(amount, 0.0):g} {unit} per worker, but the cluster can "
                       f"place only {sum(holds)} such workers ({sizes})")
        raise ConfigError(f"{key}={value:g} {problem}; Ray would wait forever: lower {key} or add larger nodes")


def _blocking(cfg: HarpConfig, demand: TrialDemand, nodes: Sequence[Mapping[str, float]]) -> tuple[str, str]:
    """The key and resource that keep a demand off the cluster (GPU before CPU)."""
    for amount, key in (("GPU", "sweep.gpus_per_trial"), ("CPU", "sweep.cpus_per_trial")):
        need = demand.bundle.get(amount, 0.0)
        if need and sum(_fits({amount: need}, node) for node in nodes) < demand.count:
            return key, amount
    return "sweep.cpus_per_trial", "CPU"


def node_capacities(bootstrap_config: Path | None = None) -> list[dict[str, float]]:
    """Total resources of each live node of the connected Ray cluster, plus each node type the
    autoscaler may add (when ``ray up``'s bootstrap config declares its resources)."""
    import ray

    nodes = [{k: float(v) for k, v in node["Resources"].items()} for node in ray.nodes() if node.get("Alive")]
    return nodes + autoscaler_node_types(BOOTSTRAP_CONFIG if bootstrap_config is None else bootstrap_config)


def autoscaler_node_types(path: Path) -> list[dict[str, float]]:
    """The declared resources of each node type with ``max_workers > 0`` in an autoscaler config."""
    if not path.is_file():
        return []
    import yaml

    config = yaml.safe_load(path.read_text()) or {}
    types = config.get("available_node_types") or {}
    return [
        {k: float(v) for k, v in (spec.get("resources") or {}).items()}
        for spec in types.values()
        if isinstance(spec, dict) and spec.get("resources") and int(spec.get("max_workers", 0) or 0) > 0
    ]


__all__ = ["TrialDemand", "autoscaler_node_types", "check_trials_fit", "node_capacities", "trial_demand", "worker_counts"]

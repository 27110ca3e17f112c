"""GPU scheduling with logical resources: sweep.gpus_per_trial (fractional too) and
train.num_workers > 1 make the placement-group bundles harp means, on a real local Ray cluster
(``ray.cluster_utils.Cluster``, a worker node with 2 logical GPUs); a trial no node can hold is
refused before Tune starts, in one line, instead of waiting forever."""
from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

import pytest

from harp.cluster.resources import check_trials_fit, node_capacities, trial_demand, worker_counts
from harp.config import load_config
from harp.errors import ConfigError
from harp.tune.space import parse_space

from .servers import free_port


def _cfg(gpus: float, cpus: float = 1.0, workers: int = 1):
    return load_config([f"sweep.gpus_per_trial={gpus}", f"sweep.cpus_per_trial={cpus}", f"train.num_workers={workers}"])


def test_trial_demands_follow_the_sweep_keys():
    assert trial_demand(_cfg(0.5), 1).bundle == {"CPU": 1.0, "GPU": 0.5}
    two = trial_demand(_cfg(2, cpus=4, workers=2), 2)
    assert (two.bundle, two.count, two.total) == ({"CPU": 2.0, "GPU": 1.0}, 2, {"CPU": 4.0, "GPU": 2.0})
    assert trial_demand(_cfg(0), 1).bundle == {"CPU": 1.0}


def test_worker_counts_come_from_the_space():
    space = parse_space({"params": {"train.num_workers": {"type": "categorical", "values": [1, 2, 4]}}}, name="w")
    assert worker_counts(space.params, 1) == [1, 2, 4]
    space = parse_space({"params": {"train.num_workers": {"type": "int", "low": 1, "high": 3}}}, name="w")
    assert worker_counts(space.params, 1) == [1, 2, 3]
    assert worker_counts(parse_space({"params": {"optim.lr": {"type": "uniform", "low": 0.1, "high": 0.2}}}, name="n").params, 2) == [2]


NODES = [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}, {"CPU": 4.0}]


@pytest.mark.parametrize(
    ("gpus", "cpus", "workers", "expected"),
    [
        (2, 1, [1], "sweep.gpus_per_trial=2 asks 2 GPUs for one trial, but no node has that many (the largest of its 3 nodes has 1)"),
        (0, 16, [1], "sweep.cpus_per_trial=16 asks 16 CPUs for one trial, but no node has that many (the largest of its 3 nodes has 8)"),
        (4, 4, [1, 4], "sweep.gpus_per_trial=4 asks 4 GPUs for one trial"),
        (1, 2, [2], "over train.num_workers=2 gives each DDP worker 0.5 GPU: NCCL cannot run two ranks on one GPU"),
        (1.5, 1, [1], "gives a trial 1.5 GPUs: Ray accepts fractions of one GPU only"),
        (3, 3, [3], "sweep.gpus_per_trial=3 over train.num_workers=3 asks 1 GPUs per worker, but the cluster can place only 2 such workers"),
    ],
)
def test_a_trial_no_node_can_hold_is_one_line(gpus, cpus, workers, expected):
    with pytest.raises(ConfigError) as err:
        check_trials_fit(_cfg(gpus, cpus), workers, NODES)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_trials_that_fit_pass():
    check_trials_fit(_cfg(0.5), [1], NODES)  # two trials share a GPU
    check_trials_fit(_cfg(1), [1], NODES)
    check_trials_fit(_cfg(2, cpus=4, workers=2), [2], NODES)  # one worker per GPU node (Train spreads them)
    check_trials_fit(_cfg(0, cpus=4), [1, 2, 4], NODES)


# ---------------------------------------------------------------------------------------------
# The real placement groups, on a local Ray cluster with logical GPUs.
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpu_cluster():
    import ray
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        patch.setenv("RAY_TRAIN_V2_ENABLED", "1")
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "num_gpus": 0, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": free_port(),
        })
        cluster.add_node(num_cpus=2, num_gpus=2)  # 2 logical GPUs, no CUDA behind them
        ray.init(address=cluster.address)
        # the trainables below live in this test module, which Ray's workers cannot import: ship them by value
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        try:
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()


def _bundle_report() -> dict:
    import ray
    from ray.util import get_current_placement_group

    group = get_current_placement_group()
    return {"assigned": ray.get_runtime_context().get_assigned_resources(), "bundles": group.bundle_specs if group else None}


@pytest.mark.slow
def test_node_capacities_see_the_logical_gpus_and_refuse_too_many(gpu_cluster, tmp_path):
    nodes = node_capacities(bootstrap_config=tmp_path / "none.yaml")
    assert sorted(n.get("GPU", 0.0) for n in nodes) == [0.0, 2.0]
    check_trials_fit(_cfg(2), [1], nodes)
    with pytest.raises(ConfigError, match=r"^sweep.gpus_per_trial=3 asks 3 GPUs for one trial, but no node has that many"):
        check_trials_fit(_cfg(3), [1], nodes)


@pytest.mark.slow
def test_an_in_process_trial_reserves_its_fractional_gpu(gpu_cluster, tmp_path):
    from ray import tune

    from harp.tune.trial import trial_resources

    def trainable(config):
        tune.report(_bundle_report())

    resources = partial(trial_resources, workers=1, cpus=1.0, gpus=0.5)
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space={"x": tune.grid_search([0, 1])},
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="pg", verbose=0),
    )
    results = tuner.fit()
    for result in results:
        assert result.error is None
        assert result.metrics["bundles"] == [{"CPU": 1.0, "GPU": 0.5}]
        assert result.metrics["assigned"] == {"CPU": 1.0, "GPU": 0.5}


def _train_worker_report(config):
    import ray.train

    rank = ray.train.get_context().get_world_rank()
    Path(config["out"], f"rank{rank}.json").write_text(json.dumps(_bundle_report()))


@pytest.mark.slow
@pytest.mark.parametrize(("gpus", "expected_gpu"), [(2.0, 1.0), (0.0, None)])
def test_multi_worker_trials_split_the_trials_gpus_over_their_workers(gpu_cluster, tmp_path, gpus, expected_gpu):
    """What harp.tune.trial asks a TorchTrainer for (per worker: cpus/N, gpus/N) through
    harp.train.ray_train.scaling_config; gpus_per_trial=0 on a GPU cluster reserves no GPU."""
    import ray.train
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    from harp.train.ray_train import scaling_config

    cfg = _cfg(gpus, cpus=1.0, workers=2)
    per_worker = {"CPU": cfg.sweep.cpus_per_trial / 2}
    if cfg.sweep.gpus_per_trial > 0:
        per_worker["GPU"] = cfg.sweep.gpus_per_trial / 2
    scaling = scaling_config(cfg, per_worker)
    trainer = DataParallelTrainer(
        _train_worker_report,
        train_loop_config={"out": str(tmp_path)},
        scaling_config=scaling,
        run_config=ray.train.RunConfig(storage_path=str(tmp_path / "runs"), name=f"pg{int(gpus)}"),
    )
    trainer.fit()
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    bundle = {"CPU": 0.5, **({"GPU": expected_gpu} if expected_gpu else {})}
    for report in reports:
        assert report["assigned"] == bundle
        assert report["bundles"] == [bundle, bundle]

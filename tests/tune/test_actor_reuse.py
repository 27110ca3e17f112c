"""Kept trial processes (Tune's actor reuse) for in-process trials: a sweep's trials run one after
another in the same process, also after a trial stopped mid-run (ASHA's way: stopped while its
function waits in ``report``), and a trial in a kept process trains exactly as in a fresh one.
Multi-worker trials keep a fresh process each."""
from __future__ import annotations

from typing import Any

from ray.tune.stopper import Stopper

from harp.config.load import to_dict
from harp.tune.space import base_config, parse_space
from harp.tune.tuner import reuses_trial_processes, run_sweep

STOPPED_LR = 1e-2
LAST_LR = 1e-3


class _StopOneAfterItsFirstEpoch(Stopper):
    """Stops the ``STOPPED_LR`` trial after epoch 1 of 2, as ASHA stops a trial at a rung."""

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return result["config"]["optim.lr"] == STOPPED_LR and result["training_iteration"] >= 1

    def stop_all(self) -> bool:
        return False


def _space(data: dict[str, Any], out, name: str, lrs: list[float], **config: Any):
    return parse_space(
        {
            "config": {"data": data, "train.epochs": 2, "train.batch_size": 4, "train.max_steps_per_epoch": 3,
                       "optim.schedule": "none", "wandb.mode": "disabled", **config},
            "sweep": {"name": name, "output_dir": str(out), "searcher": "grid", "scheduler": "none",
                      "cpus_per_trial": 1, "max_concurrent_trials": 1, "max_failures": 0},
            "params": {"optim.lr": {"type": "grid", "values": lrs}},
        },
        name=name,
    )


def _by_lr(outcome) -> dict[float, Any]:
    """lr -> the trial's per-epoch results (pid, val_loss, ...), in epoch order."""
    frames = {}
    for result in outcome.results:
        frame = result.metrics_dataframe.sort_values("training_iteration")
        frames[float(result.config["optim.lr"])] = frame
    return frames


def test_in_process_trials_run_in_kept_processes_and_train_as_in_a_fresh_one(ray_local, synthetic_config, tmp_path):
    data = to_dict(synthetic_config)["data"]
    kept_space = _space(data, tmp_path, "kept", [STOPPED_LR, 3e-3, LAST_LR], **{"train.seed": 0})
    assert reuses_trial_processes(base_config(kept_space), kept_space)
    kept = _by_lr(run_sweep(base_config(kept_space), kept_space, stop=_StopOneAfterItsFirstEpoch(), verbose=0))

    assert len(kept[STOPPED_LR]) == 1, "the stopped trial ended after its first epoch"
    assert all(len(kept[lr]) == 2 for lr in (3e-3, LAST_LR))
    pids = {lr: set(frame["pid"]) for lr, frame in kept.items()}
    assert all(len(p) == 1 for p in pids.values())
    assert len(set.union(*pids.values())) == 1, f"every trial in one kept process, also after the stopped one: {pids}"

    fresh_space = _space(data, tmp_path, "fresh", [LAST_LR], **{"train.seed": 0})
    fresh = _by_lr(run_sweep(base_config(fresh_space), fresh_space, verbose=0))[LAST_LR]
    assert set(fresh["pid"]).isdisjoint(set.union(*pids.values())), "the second sweep's trial had a process of its own"
    for column in ("train_loss", "val_loss", "val_top1"):
        assert list(kept[LAST_LR][column]) == list(fresh[column]), f"{column}: the kept process's third trial vs a fresh process"


def test_multi_worker_trials_keep_a_fresh_process_each(synthetic_config, tmp_path):
    data = to_dict(synthetic_config)["data"]
    space = parse_space(
        {"config": {"data": data}, "sweep": {"name": "ddp", "output_dir": str(tmp_path)},
         "params": {"train.num_workers": {"type": "categorical", "values": [1, 2]}}},
        name="ddp",
    )
    assert not reuses_trial_processes(base_config(space), space)

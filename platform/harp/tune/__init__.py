"""Sweeps: search spaces -> Optuna (ask/tell) -> Ray Tune (+ ASHA) -> Ray Train trials -> W&B.

One job per module:

- ``params`` and ``space``: a search space in memory (parameters, conditions, sampling, grid
  points) and reading its file into one, with the trial config;
- ``study``: the Optuna study's storage and sampler (``OPTUNA_SAMPLERS``);
- ``searcher``: ``HarpOptunaSearch``, Ray's OptunaSearch that records ASHA-stopped trials as PRUNED;
- ``trial``: the Tune trainable (in-process, or a TorchTrainer for several workers);
- ``wandb_logging``: one W&B run per trial from the driver, and the sweep's summary run;
- ``sweep_dir``: the sweep directory's layout and the files that say what a sweep is;
- ``ray_session``: a private local Ray (or a named cluster) for one sweep;
- ``tuner``: assembles the above into one Tune run, fresh or resumed;
- ``results``: reads a finished sweep back: trials, errors, Optuna states, best checkpoints.
"""
from __future__ import annotations

"""GFLOPs per clip of each trial's model, and which trials make the accuracy/compute front.

A multi-objective sweep with a ``gflops`` objective measured it in every trial (``harp.tune.trial``
adds it to each report): those numbers are used as they are, and the front is Optuna's Pareto
front of the study. Any other sweep gets its models measured here, once per distinct model
configuration (``harp.models.flops``: on the meta device, no weights, a fraction of a second), and
the front is the set of trials no other trial beats on both score and compute.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from harp.config.load import to_dict
from harp.numbers import is_finite
from harp.report.figures import pareto_set
from harp.report.snapshot import SweepSnapshot
from harp.tune.results import pareto_trials

log = logging.getLogger("harp.report")


def _num_classes(cfg: Any, cache: dict[str, int]) -> int:
    if cfg.model.num_classes:
        return int(cfg.model.num_classes)
    from harp.data.manifest import class_names, load_manifest, manifest_path

    path = str(manifest_path(cfg.data))
    if path not in cache:
        cache[path] = len(class_names(load_manifest(path)))
    return cache[path]


def trial_gflops(snap: SweepSnapshot) -> tuple[dict[str, float], str]:
    """Trial id -> GFLOPs per clip, and where the numbers come from."""
    reported = {}
    for row in snap.rows:
        values = [float(h["gflops"]) for h in row.record.history if is_finite(h.get("gflops"))]
        if values:
            reported[row.trial_id] = values[-1]
    if reported:
        return reported, "measured by each trial (the sweep's gflops objective)"
    from harp.models.flops import measure  # torch: only when the report draws this figure

    measured: dict[str, float] = {}
    by_model: dict[str, float] = {}
    classes: dict[str, int] = {}
    for row in snap.rows:
        cfg = snap.trial_config(row.record)
        if cfg is None:
            continue
        try:
            key = json.dumps([to_dict(cfg)["model"], str(cfg.data.root), str(cfg.data.manifest)], sort_keys=True, default=str)
            if key not in by_model:
                by_model[key] = float(measure(cfg.model, _num_classes(cfg, classes)).gflops)
            measured[row.trial_id] = by_model[key]
        except Exception as exc:  # an unbuildable model fails its trial; the figure goes on without it
            log.debug("GFLOPs of trial %s not measured (%s)", row.trial_id, exc)
    return measured, "measured here per model configuration (torch.utils.flop_counter, one clip)"


def front(snap: SweepSnapshot, gflops: dict[str, float]) -> tuple[set[str], str]:
    """The trials on the accuracy/compute front, and what the front is."""
    if "gflops" in snap.objectives and snap.study is not None:
        ids = {str(t.user_attrs.get("tune_trial_id")) for t in pareto_trials(snap.study)}
        return ids & set(gflops), "Pareto front (Optuna, over the sweep's objectives)"
    points = {row.trial_id: (float(row.best), gflops[row.trial_id]) for row in snap.rows if row.best is not None and row.trial_id in gflops}
    return pareto_set(points, snap.mode), "non-dominated trials (no other trial is both better and cheaper)"


__all__ = ["front", "trial_gflops"]

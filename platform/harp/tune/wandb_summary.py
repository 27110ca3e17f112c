"""The sweep's W&B summary run (export writes it): one run per sweep, id ``<sweep>-summary``, in the
sweep's group, carrying what no trial's run can: the trials table (``trials.parquet``'s rows), the
parameter importances (``harp.tune.results.param_importances``: PED-ANOVA over COMPLETE and PRUNED
trials), the Pareto front of a multi-objective sweep (Optuna's), and the exported best model's
test confusion matrix as W&B's own confusion-matrix chart."""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harp.tune.wandb_mode import sweep_mode, sweep_wandb_dirs

if TYPE_CHECKING:
    import pandas as pd
    import wandb

log = logging.getLogger("harp.tune")


def _table_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy W&B can tabulate (lists and dicts as JSON text)."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(lambda v: v if isinstance(v, (str, int, float, type(None))) else json.dumps(v, default=str))
    return frame


def _log_study(run: wandb.Run, directory: Path) -> None:
    """Importances, the Pareto front and the best model's test confusion matrix, where they exist."""
    import wandb

    from harp.tune.results import exported_confusion, load_study, param_importances, pareto_trials
    from harp.tune.sweep_dir import read_sweep

    cfg, _, paths = read_sweep(directory)
    study = load_study(cfg, paths)
    if study is not None:
        scores, how = param_importances(study)
        run.summary["importance_method"] = how
        if scores:
            table = wandb.Table(columns=["parameter", "importance"], data=[[k, float(v)] for k, v in scores.items()])
            run.log({"param_importance": wandb.plot.bar(table, "parameter", "importance", title="parameter importance")})
        front = pareto_trials(study)
        if front:
            import optuna

            names = [str(cfg.sweep.metric), *(str(o).partition(":")[0] for o in cfg.sweep.objectives)]
            columns: list[str | int] = ["number", "trial_id", *names, "pareto", "params"]
            on_front = {t.number for t in front}

            def row(t: optuna.trial.FrozenTrial) -> list[Any]:
                return [t.number, t.user_attrs.get("tune_trial_id"), *t.values, t.number in on_front, json.dumps(t.params, default=str)]

            complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            everyone = wandb.Table(columns=columns, data=[row(t) for t in complete])
            run.log({"pareto_front": wandb.Table(columns=columns, data=[row(t) for t in front]),
                     "objectives": wandb.plot.scatter(everyone, names[1], names[0], title=f"{names[0]} vs {names[1]} (pareto: on the front)")})
    confusion = exported_confusion(paths.best)
    if confusion is not None:
        names, matrix = confusion
        truth = [i for i, row in enumerate(matrix) for j, n in enumerate(row) for _ in range(n)]
        predicted = [j for row in matrix for j, n in enumerate(row) for _ in range(n)]
        run.log({"best_test_confusion": wandb.plot.confusion_matrix(y_true=truth, preds=predicted, class_names=names)})
        run.summary["best/test_confusion_matrix"] = matrix


def log_summary(
    *,
    sweep_name: str,
    project: str,
    entity: str | None,
    mode: str,
    directory: str | Path,
    trials: pd.DataFrame,
    best: Mapping[str, Any],
) -> str | None:
    """The summary run (id ``<sweep>-summary``): the trials table, the best config, the parameter
    importances, the Pareto front and the best model's confusion matrix; returns its id."""
    directory = Path(directory)
    run_mode = sweep_mode(mode, directory)
    if run_mode == "disabled":
        return None
    import wandb

    with sweep_wandb_dirs(directory):
        run = wandb.init(
            project=project,
            entity=entity,
            group=sweep_name,
            id=f"{sweep_name}-summary",
            name=f"{sweep_name}-summary",
            job_type="sweep-summary",
            tags=["summary"],
            dir=str(directory),
            mode=run_mode,
            resume="allow",
            reinit="create_new",
            config={"best": dict(best)},
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
        )
        try:
            run.log({"trials": wandb.Table(dataframe=_table_frame(trials))})
            for key, value in best.items():
                if isinstance(value, (int, float, str, bool)):
                    run.summary[f"best/{key}"] = value
            try:
                _log_study(run, directory)
            except Exception as exc:  # the summary still has the trials table
                log.warning("W&B: importances / Pareto front / confusion matrix not logged (%s)", exc)
        finally:
            run.finish()
    return str(run.id)


__all__ = ["log_summary"]

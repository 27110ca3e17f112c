"""The sampler of a space whose keys have alternatives: each key sampled inside the alternative
that applies, while the study holds the key once.

The study records ``optim.lr`` under one name with the union of its alternatives' ranges
(``harp.tune.params``), so Optuna's own sampler would propose an sgd learning rate from the
adamw range. ``AlternativesSampler`` wraps that sampler (TPE, random, CMA-ES, NSGA-II) and keeps
every value inside the alternative the trial's earlier choices select:

- a joint (relative) proposal keeps a key's value only when the proposal itself shows which
  alternative applies and the value lies in it (multivariate TPE samples ``optim.name`` and
  ``optim.lr`` together, so its proposals mostly do); otherwise the trial asks for the key alone;
- a key asked for alone is sampled by the wrapped sampler in the alternative's own distribution,
  learning only from the trials where that alternative applied (a view of the study holding those
  trials: an sgd learning rate learns from sgd trials, and a categorical alternative never meets
  a value outside its choices).

Keys without alternatives pass straight through, and so does everything else a sampler does
(``before_trial``/``after_trial``: TPE's constant liar, NSGA-II's generations).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from harp.tune.params import Param, SearchSpace

# Optuna's system attribute with the values an enqueued trial is fixed to (``enqueue_trial``).
_FIXED_PARAMS = "fixed_params"


class AlternativesSampler(BaseSampler):
    """``base`` for ``space``, with each key of several alternatives sampled inside the one that
    applies (see the module docstring)."""

    def __init__(self, base: BaseSampler, space: SearchSpace) -> None:
        self.base = base
        self.space = space

    # -- relative (joint) sampling -------------------------------------------------------------
    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.base.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        proposal = self.base.sample_relative(study, trial, search_space)
        return self.space.settled(proposal, trial.system_attrs.get(_FIXED_PARAMS) or {})

    # -- one key at a time ---------------------------------------------------------------------
    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        if not self.space.has_alternatives(param_name):
            return self.base.sample_independent(study, trial, param_name, param_distribution)
        alternative = self.space.alternative_for(param_name, self.space.decoded(trial.params))
        if alternative is None:  # asked for outside SearchSpace.sample: the union it was given
            return self.base.sample_independent(study, trial, param_name, param_distribution)
        own = alternative.distribution()
        if own.single():
            return own.choices[0] if isinstance(own, CategoricalDistribution) else own.low
        return self.base.sample_independent(self._regime(study, trial, alternative), trial, param_name, own)

    def _regime(self, study: optuna.Study, trial: FrozenTrial, alternative: Param) -> optuna.Study:
        """An in-memory study of the trials (finished, and running ones for TPE's constant liar)
        where ``alternative`` applied, with the key's distribution narrowed to it."""
        view = optuna.create_study(directions=study.directions)
        own = alternative.distribution()
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        kept = []
        for past in study.get_trials(deepcopy=False, states=states):
            if past.number == trial.number or alternative.key not in past.params:
                continue
            decoded = self.space.decoded(past.params)
            if self.space.alternative_for(alternative.key, decoded) != alternative or not alternative.contains(decoded[alternative.key]):
                continue
            distributions = {**past.distributions, alternative.key: own}
            kept.append(optuna.trial.create_trial(
                state=past.state,
                params=past.params,
                distributions=distributions,
                values=past.values if past.state == TrialState.COMPLETE else None,
                intermediate_values=past.intermediate_values,
                user_attrs=past.user_attrs,
                system_attrs=past.system_attrs,
            ))
        view.add_trials(kept)
        return view

    # -- the rest is the wrapped sampler's -----------------------------------------------------
    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()


__all__ = ["AlternativesSampler"]

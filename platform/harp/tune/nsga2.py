"""Optuna's NSGA-II sampler in a form Tune can save.

Tune pickles the searcher, and with it the sampler, into its experiment state every few seconds
(and ``Tuner.restore`` unpickles it). Optuna 5.1's genetic samplers hold a ``threading.Lock``
(``BaseGASampler._thread_lock``), which does not pickle, so an NSGA-II sweep failed
("cannot pickle '_thread.lock' object") the first time Tune saved its state. This subclass
leaves the lock out of its pickled state and makes a new one when unpickled; everything else (the
random generator's state, the population cache) travels as it is.

It keeps Optuna's class name on purpose: the genetic samplers key the generation they record in
each trial's system attributes by class name (``"NSGAIISampler:generation"``), so a study started
with Optuna's own class continues with this one.
"""
from __future__ import annotations

import threading
from typing import Any

import optuna

_LOCK_ATTR = "_thread_lock"


class NSGAIISampler(optuna.samplers.NSGAIISampler):
    """``optuna.samplers.NSGAIISampler`` that pickles (see the module docstring)."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop(_LOCK_ATTR, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        setattr(self, _LOCK_ATTR, threading.Lock())


__all__ = ["NSGAIISampler"]

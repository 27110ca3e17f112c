"""A quiet trial process and a quiet sweep's progress line.

- Tune's per-trial ``Tee`` of stderr (real, from ray.tune) and a handler made while it is
  ``sys.stderr``: once Tune closes the trial's log file, flushing that handler makes Tune warn
  "ValueError when calling 'flush'" (the ~36 warnings per trial torch's loggers caused), unless the
  trainable ran under ``quiet_trial_process``;
- ``SweepProgress`` under a real Tune run (local Ray, ASHA, a failing trial): one line per ended
  trial saying COMPLETE / PRUNED / FAIL, or one line kept up to date on a terminal."""
from __future__ import annotations

import contextlib
import io
import logging
import re
import sys

import pytest
import ray.cloudpickle
from ray import tune
from ray.tune.utils.util import Tee

from harp.tune.progress import SweepProgress
from harp.tune.trial import quiet_trial_process

EPOCHS = 4
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import this module


def _trial_like(tmp_path, trainable) -> tuple[logging.Handler, list[str]]:
    """Run ``trainable`` the way Tune runs a trial (stderr redirected to a Tee of the trial's log
    file), close the file as Tune does, then flush the handler it made as ``logging.shutdown``
    does: what Tune's Tee warns."""
    log_file = open(tmp_path / "stderr", "a+")  # noqa: SIM115 - closed below, as Tune closes it
    tee = Tee(sys.stderr, log_file)
    with contextlib.redirect_stderr(tee):  # type: ignore[type-var]  # a Tee is a stream in all but name
        trainable({})
    log_file.close()
    warnings: list[str] = []
    tune_util = logging.getLogger("ray.tune.utils.util")
    catcher = logging.Handler()
    catcher.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    tune_util.addHandler(catcher)
    try:
        handler = logging.getLogger("harp.test.quiet").handlers[-1]
        handler.flush()
    finally:
        tune_util.removeHandler(catcher)
    return handler, warnings


def _adds_a_handler(config):
    logging.getLogger("harp.test.quiet").addHandler(logging.StreamHandler())  # binds sys.stderr: Tune's Tee


def test_a_handler_made_during_a_trial_is_moved_off_its_log_file(tmp_path):
    logger = logging.getLogger("harp.test.quiet")
    try:
        _, warned = _trial_like(tmp_path, _adds_a_handler)
        assert warned and "ValueError when calling 'flush'" in warned[0]  # the cause, as Tune has it
        handler, warned = _trial_like(tmp_path, quiet_trial_process(_adds_a_handler))
        assert warned == []
        assert handler.stream is sys.stderr  # the process's own stream again (the Tee's stream1): it still logs
    finally:
        logger.handlers.clear()


TORCH_IN_A_TRIAL = """
import contextlib, logging, sys
from ray.tune.utils.util import Tee
from harp.tune.trial import quiet_trial_process

assert "torch" not in sys.modules
tee = Tee(sys.stderr, open(sys.argv[1], "a+"))

def stopped_from_outside(config):  # ASHA stops a trial while it runs: its function never returns
    raise SystemExit(0)

with contextlib.redirect_stderr(tee):
    try:
        quiet_trial_process(stopped_from_outside)({})
    except SystemExit:
        pass
    import torch  # noqa: F401
handlers = [h for lg in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()] for h in getattr(lg, "handlers", [])]
print(sum(isinstance(h, logging.StreamHandler) for h in handlers), sum(getattr(h, "stream", None) is tee for h in handlers))
"""


def test_torch_imported_in_a_trial_never_binds_its_log_file(tmp_path):
    """A fresh process (torch not yet imported, as in a trial's): torch's 36 handlers bind the
    process's stderr, not the trial's Tee, even when the trial is ended from outside."""
    import subprocess

    run = subprocess.run([sys.executable, "-c", TORCH_IN_A_TRIAL, str(tmp_path / "stderr")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    handlers, on_tee = map(int, run.stdout.split())
    assert handlers >= 30 and on_tee == 0, run.stdout


def test_the_checkpoint_line_is_quiet_in_a_trial():
    quiet_trial_process(lambda config: None)({})
    assert logging.getLogger("ray.train._internal.storage").getEffectiveLevel() == logging.WARNING


def curve(config):
    if config["optim.lr"] < 2e-4:
        raise RuntimeError("this trial fails on purpose")
    good = config["optim.lr"] > 1e-2
    for epoch in range(1, EPOCHS + 1):
        tune.report({"epoch": epoch, "val_top1": (0.5 + 0.1 * epoch) if good else 0.02 * epoch})


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.slow
@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
def test_one_line_per_trial_or_one_live_line(ray_local, tmp_path, terminal):
    from ray.tune.schedulers import ASHAScheduler

    stream = _Terminal() if terminal else io.StringIO()
    progress = SweepProgress(total=4, metric="val_top1", mode="max", planned_epochs=EPOCHS, stream=stream)
    lrs = [3e-2, 5e-2, 1e-3, 1e-4]  # two good, one ASHA stops, one fails
    tuner = tune.Tuner(
        curve,
        param_space={"optim.lr": tune.grid_search(lrs)},
        tune_config=tune.TuneConfig(scheduler=ASHAScheduler(time_attr="epoch", metric="val_top1", mode="max", max_t=EPOCHS,
                                                            grace_period=1, reduction_factor=2), max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="tune", verbose=0, callbacks=[progress],
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    tuner.fit()
    text = stream.getvalue()
    permanent = [re.sub(r"^.*\r\x1b\[K", "", line) for line in text.split("\n") if line.strip()]
    ended = [line for line in permanent if line.startswith("[")]
    assert [line[:5] for line in ended] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"], text
    assert " COMPLETE val_top1=0.9000, 4 epochs" in ended[0] and " COMPLETE val_top1=0.9000" in ended[1]
    assert re.search(r" PRUNED \(stopped at epoch [12]/4\) val_top1=0\.0[24]00", ended[2]), ended[2]
    assert "FAIL: RuntimeError: this trial fails on purpose" in ended[3], ended[3]
    assert all("best val_top1=0.9000" in line for line in ended)
    if terminal:  # the live line, rewritten in place, and a newline at the end
        assert "\r\x1b[K4/4 trials ended (2 complete, 1 pruned, 1 fail), 0 running;" in text and text.endswith("\n")
    else:
        assert "\r" not in text and len(permanent) == 4

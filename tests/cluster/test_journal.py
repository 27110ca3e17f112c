"""Optuna's JournalStorage for the study (``sweep.optuna_storage=journal:///abs/file.log``): an
append-only file instead of a database, for drivers whose searcher time matters (many cheap
trials; ``bench/driver_scale.py --storages sqlite,journal``). A real tiny `harp sweep` keeps its
study there, Optuna's own reader and optuna-dashboard (started here on 127.0.0.1) read it back,
`harp status` finds it, a second sweep of the same name is refused and a relative path gets one line."""
from __future__ import annotations

import optuna
import pytest
import yaml
from optuna.storages.journal import JournalFileBackend

from dashboard_server import get_json, running_dashboard

from .conftest import harp, tiny_space

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def journal_sweep(synthetic_config, synthetic_manifest, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("journal")
    journal = tmp / "studies" / "journal-sweep.log"  # its folder does not exist yet
    space = tiny_space(synthetic_config, name="journal-sweep", output_dir=tmp / "runs", extra_sweep={"optuna_storage": f"journal://{journal}"})
    space_file = tmp / "space.yaml"
    space_file.write_text(yaml.safe_dump(space))
    run = harp("sweep", "--space", str(space_file), "--no-export", "--quiet", timeout=900)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return {"journal": journal, "sweep_dir": tmp / "runs" / "journal-sweep", "space_file": space_file, "output": run.stdout}


def test_the_study_lives_in_the_journal_and_optuna_reads_it(journal_sweep):
    journal = journal_sweep["journal"]
    assert journal.is_file() and not (journal_sweep["sweep_dir"] / "optuna.db").exists()
    study = optuna.load_study(study_name="journal-sweep", storage=optuna.storages.JournalStorage(JournalFileBackend(str(journal))))
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert study.metric_names == ["val_top1"] and all(set(t.params) == {"optim.lr"} for t in trials)
    assert all(sorted(t.intermediate_values) == [1] and t.user_attrs["tune_trial_id"] for t in trials)
    assert f"study: journal://{journal}" in journal_sweep["output"]


def test_status_reads_the_journal_and_a_second_sweep_of_the_name_is_refused(journal_sweep):
    status = harp("status", str(journal_sweep["sweep_dir"]))
    assert status.returncode == 0, status.stderr[-2000:]
    assert "trials: 2 COMPLETE" in status.stdout, status.stdout
    elsewhere = journal_sweep["sweep_dir"].parent.parent / "runs-2"  # a new sweep directory, the same study name
    again = harp("sweep", "--space", str(journal_sweep["space_file"]), f"sweep.output_dir={elsewhere}", "--no-export", "--quiet")
    assert again.returncode != 0
    assert "an Optuna study named 'journal-sweep' already exists in sweep.optuna_storage" in again.stderr, again.stderr[-2000:]


def test_a_relative_journal_path_gets_one_line(tmp_path):
    from harp.errors import ConfigError
    from harp.tune.study import make_storage

    with pytest.raises(ConfigError, match=r"absolute path, e\.g\. journal:///shared/studies/NAME\.log$"):
        make_storage("journal://studies/x.log")


def test_optuna_dashboard_opens_the_journal_file(journal_sweep):
    with running_dashboard(str(journal_sweep["journal"])) as base:
        studies = get_json(f"{base}/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == ["journal-sweep"]
        study = get_json(f"{base}/api/studies/{studies[0]['study_id']}")
        assert study["objective_names"] == ["val_top1"] and len(study["trials"]) == 2

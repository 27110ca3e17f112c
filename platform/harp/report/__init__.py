"""Reading a sweep for people: ``harp report`` (one self-contained HTML page and its figures as
PNG) and ``harp status`` (a terminal view, ``--watch`` to follow a running sweep).

Both read the sweep directory only (its config, Tune's trial state, the Optuna study, what export
wrote, the data set's manifest), so they work from another shell or machine while the sweep
runs, and on a failed one. Layer: above ``harp.export`` (whose trials table and output files it
reads) and ``harp.tune`` (``harp.tune.results``), below ``harp.commands``.

- ``snapshot``: what the directory holds now, tolerant of missing pieces;
- ``figures`` and ``costs``: the matplotlib figures, GFLOPs per trial and the Pareto front;
- ``links``: how to open optuna-dashboard, the W&B project and Ray's dashboard;
- ``page``: the HTML page; ``status``: the terminal view.
"""
from __future__ import annotations

from harp.report.page import Report, build_report
from harp.report.snapshot import SweepSnapshot, read_snapshot

__all__ = ["Report", "SweepSnapshot", "build_report", "read_snapshot"]

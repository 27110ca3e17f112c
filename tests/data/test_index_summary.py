"""`harp data` says each summary once: `harp data index` printed the manifest's summary line twice
(the indexer logged it and the command printed it), and `inspect` on a data set it had to index
did the same."""
from __future__ import annotations

import shutil
import subprocess
import sys

from harp.config.load import to_dict


def _harp_data(*args: str) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "harp.cli", "data", *args], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return (out.stdout + out.stderr).splitlines()


def test_index_and_inspect_print_the_summary_once(synthetic_config, synthetic_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synthetic_root, root, ignore=shutil.ignore_patterns("harp_manifest*"))
    data = to_dict(synthetic_config)["data"]
    overrides = [f"data.root={root}", f"data.synth.num_classes={data['synth']['num_classes']}", "data.num_workers=0"]
    summary = "videos, 4 classes:"
    lines = _harp_data("index", *overrides)
    assert sum(summary in line for line in lines) == 1, lines
    assert sum(summary in line for line in _harp_data("index", "--quiet", *overrides)) == 1
    (root / "harp_manifest.parquet").unlink()  # inspect indexes it again, and says so once
    lines = _harp_data("inspect", *overrides)
    assert sum(summary in line for line in lines) == 1, lines

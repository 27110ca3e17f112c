"""Read what an offline W&B run logged, straight from its ``.wandb`` file (no network, no service).

A test helper, not part of harp. wandb 0.31 ships no Python reader for ``.wandb`` files: the
``DataStore`` class of older wandb releases went with the move of the internal process to the Go
``wandb-core`` binary. So the framing is read here, and every record is decoded by W&B's own
protobuf message (``wandb.proto.wandb_internal_pb2.Record``).

The framing is W&B's: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then LevelDB's log
format: 32 KiB blocks of records, each with a 7-byte header (CRC32C, little-endian length, type),
a payload split across blocks as FIRST / MIDDLE / LAST pieces, and block tails under 7 bytes
left as padding.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HEADER = b":W&B" + (0xBEE1).to_bytes(2, "little") + bytes([0])
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[bytes]:
    """The payloads of a ``.wandb`` file's records, reassembled across blocks."""
    data = Path(path).read_bytes()
    if not data.startswith(HEADER):
        raise ValueError(f"{path} is not a W&B transaction log (header {data[:7]!r})")
    pos, pending = len(HEADER), b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block tail too short for a header: padding
            pos += left
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk


def _value(item: Any) -> Any:
    return json.loads(item.value_json)


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def read_offline_run(run_dir: str | Path, *, finished: bool = True, timeout: float = 60.0) -> dict[str, Any]:
    """What an offline run logged (``_read_run``); with ``finished``, once its exit record is on
    disk. ``run.finish()`` returns when W&B's service has the run's exit, not when its writer has
    flushed the ``.wandb`` file: read at once on a busy machine, the file can still hold only its
    first records (the summary run's test saw an empty summary about one time in thirty under
    load)."""
    deadline = time.monotonic() + timeout
    while True:
        run = _read_run(run_dir)
        if not finished or run["exit_code"] is not None:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"{run_dir}: no exit record {timeout:.0f} s after the run finished ({len(run['history'])} history rows read)")
        time.sleep(0.2)


def _read_run(run_dir: str | Path) -> dict[str, Any]:
    """What an offline run logged, as W&B's server would see it after ``wandb sync``::

        {"id", "name", "group", "tags", "config", "history": [row per log call], "summary",
         "metrics": {name: the define_metric record}, "files": [saved paths], "exit_code"}

    ``config`` is the run record's (wandb.init's config) updated by later config records; the
    ``tags`` are the last run record's (``run.tags = ...`` sends a new one)."""
    from google.protobuf.json_format import MessageToDict
    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(Path(run_dir).glob("*.wandb"))
    if not files:
        raise FileNotFoundError(f"no .wandb file in {run_dir}")
    out: dict[str, Any] = {"history": [], "summary": {}, "config": {}, "metrics": {}, "files": [], "tags": [], "exit_code": None}
    for raw in records(files[0]):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = {_key(i): _value(i) for i in record.history.item}
            if not any(k.startswith("_wandb") for k in row) or len(row) > 2:
                out["history"].append(row)
        elif kind == "summary":
            for item in record.summary.update:
                out["summary"][_key(item)] = _value(item)
        elif kind == "config":
            for item in record.config.update:
                out["config"][_key(item)] = _value(item)
        elif kind == "run":
            run = record.run
            out.update(id=run.run_id, name=run.display_name, group=run.run_group, tags=list(run.tags), project=run.project)
            for item in run.config.update:
                out["config"][_key(item)] = _value(item)
        elif kind == "metric":
            metric = MessageToDict(record.metric, preserving_proto_field_name=True)
            out["metrics"][metric.get("name") or metric.get("glob_name")] = metric
        elif kind == "files":
            out["files"] += [f.path for f in record.files.files]
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    out["config"].pop("_wandb", None)
    return out

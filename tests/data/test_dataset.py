"""The Dataset/DataLoader over real synthetic videos: an epoch with workers, multi-view test sets,
short videos, label-swapping flips, and bad files end to end."""
from __future__ import annotations

import copy
import logging
import shutil

import pytest
import torch

from harp.data.determinism import EpochSampler, ItemKey
from harp.data.loader import build_dataset, build_loader, check_skip_budget, failed_paths
from harp.data.manifest import load_manifest
from harp.data.synthetic import CLASS_NAMES
from harp.data.transforms import hflip
from harp.errors import HarpError


def test_one_real_epoch_with_workers(synthetic_config, synthetic_manifest):
    cfg = copy.deepcopy(synthetic_config)
    dataset = build_dataset(cfg, "train", True, frames=8, frame_size=32)
    df = load_manifest(synthetic_manifest)
    assert len(dataset) == ((df["split"] == "train") & (df["error"] == "")).sum()
    loader = build_loader(dataset, 4, shuffle=True, num_workers=2)
    seen, labels = 0, []
    for batch in loader:
        assert batch["video"].dtype == torch.uint8 and batch["video"].shape[1:] == (8, 32, 32, 3)
        assert batch["skipped"].sum() == 0 and batch["failed"] == [""] * len(batch["label"])
        seen += len(batch["label"])
        labels += batch["label"].tolist()
    assert seen == len(dataset)
    assert set(labels) <= set(range(4)) and len(set(labels)) > 1
    assert dataset.class_names == list(CLASS_NAMES[:4])


@pytest.mark.parametrize("method", ["uniform", "equidistant", "random", "dense", "multi_clip", "segment_stride"])
def test_every_sampler_through_the_dataset(synthetic_config, synthetic_manifest, method):
    cfg = copy.deepcopy(synthetic_config)
    cfg.sampling.method, cfg.sampling.num_clips, cfg.data.short_video = method, 2, "repeat_last"
    train = build_dataset(cfg, "train", True, frames=8, frame_size=32)
    assert len(train) == train.num_videos * (2 if method == "multi_clip" else 1)
    assert train[0]["video"].shape == (8, 32, 32, 3)
    test = build_dataset(cfg, "test", False, frames=8, frame_size=32, num_views_clips=2, num_crops=3)
    item = test[0]
    assert item["video"].shape == (6, 8, 32, 32, 3)  # 2 clips x 3 crops
    assert torch.equal(item["video"], test[0]["video"]), "test items are deterministic"


def test_num_frames_override_and_augment_short_videos(synthetic_config, synthetic_manifest):
    cfg = copy.deepcopy(synthetic_config)
    cfg.sampling.num_frames, cfg.data.short_video = 12, "augment"
    dataset = build_dataset(cfg, "train", True, frames=8, frame_size=32)
    short = [i for i in range(dataset.num_videos) if dataset.videos.frames[i] < dataset.sampler.frames_needed]
    assert short, "the fixture has clips shorter than 12 x 2 frames"
    assert dataset[short[0]]["video"].shape == (12, 32, 32, 3)


def test_flip_swaps_labels(synthetic_config, synthetic_manifest):
    cfg = copy.deepcopy(synthetic_config)  # the synthetic preset: data.flip=swap
    dataset = build_dataset(cfg, "train", True, frames=4, frame_size=32)
    assert dataset.flip_swap == {0: 1, 1: 0}
    dataset.transform = lambda clip, rng: ([hflip(clip[:, :32, :32])], True)  # always flips
    for i in range(dataset.num_videos):
        original = int(dataset.videos.labels[i])
        assert dataset[i]["label"] == {0: 1, 1: 0}.get(original, original)
    cfg.data.flip = "never"
    assert not build_dataset(cfg, "train", True, frames=4, frame_size=32).transform.flip


def test_bad_file_at_train_time_is_replaced_counted_and_budgeted(synthetic_config, synthetic_root, tmp_path, caplog):
    root = tmp_path / "copy"
    shutil.copytree(synthetic_root, root)
    cfg = copy.deepcopy(synthetic_config)
    cfg.data.root, cfg.data.manifest = str(root), ""
    dataset = build_dataset(cfg, "train", True, frames=8, frame_size=32)
    broken = dataset.path(0)
    broken.write_bytes(b"\x00" * 2048)  # breaks after indexing: the probe said it was fine
    with caplog.at_level(logging.WARNING, logger="harp.data"):
        batches = list(build_loader(dataset, 4, shuffle=False, num_workers=0))
    skipped = sum(int(b["skipped"].sum()) for b in batches)
    failed = failed_paths(f for b in batches for f in b["failed"])
    seen = sum(len(b["label"]) for b in batches)
    assert seen == len(dataset), "a replacement sample takes the bad file's place"
    assert skipped >= 1 and str(broken) in failed
    assert str(broken) in caplog.text
    check_skip_budget(skipped, seen, max_fraction=0.5, failed_paths=failed)  # within budget: no error
    with pytest.raises(HarpError, match=str(broken.name)):
        check_skip_budget(skipped, seen, max_fraction=0.01, failed_paths=failed)


def test_all_files_bad_fails_loudly(synthetic_config, synthetic_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synthetic_root, root)
    cfg = copy.deepcopy(synthetic_config)
    cfg.data.root, cfg.data.manifest, cfg.data.max_retries = str(root), "", 3
    dataset = build_dataset(cfg, "val", False, frames=8, frame_size=32)
    for i in range(dataset.num_videos):
        dataset.path(i).write_bytes(b"")
    with pytest.raises(HarpError, match="failed to decode"):
        dataset[0]


def test_a_training_item_is_a_function_of_its_key_alone(synthetic_config, synthetic_manifest):
    cfg = copy.deepcopy(synthetic_config)
    cfg.augment.color_jitter = 0.2
    dataset = build_dataset(cfg, "train", True, frames=8, frame_size=32)
    torch_state = torch.get_rng_state()
    first = [dataset[ItemKey(7, 3, i)]["video"] for i in range(4)]
    assert torch.equal(torch.get_rng_state(), torch_state), "the dataset never draws from torch's RNG"
    fresh = build_dataset(cfg, "train", True, frames=8, frame_size=32)  # another process, another worker: the same clips
    assert all(torch.equal(a, fresh[ItemKey(7, 3, i)]["video"]) for i, a in enumerate(first))
    torch.manual_seed(123)  # no hidden state enters
    assert all(torch.equal(a, dataset[ItemKey(7, 3, i)]["video"]) for i, a in enumerate(first))
    next_epoch = [dataset[ItemKey(7, 4, i)]["video"] for i in range(4)]
    assert any(not torch.equal(a, b) for a, b in zip(first, next_epoch)), "augmentation changes with the epoch"
    assert torch.equal(dataset[2]["video"], dataset[ItemKey(0, 0, 2)]["video"]), "a plain index is epoch 0 of seed 0"


def test_loader_workers_do_not_change_an_epoch(synthetic_config, synthetic_manifest):
    cfg = copy.deepcopy(synthetic_config)
    dataset = build_dataset(cfg, "train", True, frames=4, frame_size=32)

    def epoch(workers):
        sampler = EpochSampler(dataset, rank=0, world_size=1, seed=5)
        sampler.set_epoch(2)
        loader = build_loader(dataset, 4, shuffle=False, sampler=sampler, num_workers=workers)
        return [batch["video"] for batch in loader]

    inline, two = epoch(0), epoch(2)
    assert len(inline) == len(two) and all(torch.equal(a, b) for a, b in zip(inline, two))

"""Determinism in one place: which sample a training step sees, and every random choice made for
it, is a pure function of ``(seed, epoch, index)``, never of hidden RNG state.

Why it matters: a resumed run must see exactly the clips the uninterrupted run saw, whatever the
number of loader workers and whether they persist across epochs (a persistent worker would carry
its RNG from one epoch into the next, a resumed run starts fresh workers), and the model's own
random stream (dropout), restored from the checkpoint, must not depend on the data pipeline.

How:

- ``EpochSampler`` yields ``ItemKey(seed, epoch, index)``: the permutation a ``DistributedSampler``
  draws for (seed, epoch), each index tagged with the seed and the epoch it was drawn for.
- The dataset turns a key into its own numpy Generator with ``item_rng``: a ``SeedSequence`` of
  (data seed, seed, epoch, index). Every random choice of the item (the frames, the crop, the flip,
  the colour jitter, the replacement of a file that fails to decode) is drawn from that Generator,
  and torch's global RNG is never touched, so 0 or N loader workers leave the model's stream alone.
- A plain int index (validation, test, previews) is ``ItemKey(0, 0, index)``: the same item on
  every call.
- ``ShardSampler`` splits evaluation indices across ranks without padding, so counts are exact.
"""
from __future__ import annotations

from collections.abc import Iterator, Sized
from dataclasses import dataclass

import numpy as np
from torch.utils.data import DistributedSampler, Sampler

_UINT64 = (1 << 64) - 1


@dataclass(frozen=True)
class ItemKey:
    """What one training sample is: the sampler's seed, the epoch and the dataset index."""

    seed: int
    epoch: int
    index: int


def as_key(item: int | ItemKey) -> ItemKey:
    """The key of a dataset access: keys pass through, a plain index is epoch 0 of seed 0."""
    return item if isinstance(item, ItemKey) else ItemKey(0, 0, int(item))


def item_rng(key: ItemKey, data_seed: int = 0) -> np.random.Generator:
    """The one Generator all of an item's random choices come from: a pure function of its key
    and the data set's seed (``data.seed``), independent of any process's RNG state."""
    words = [int(v) & _UINT64 for v in (data_seed, key.seed, key.epoch, key.index)]  # SeedSequence wants non-negative ints
    return np.random.default_rng(np.random.SeedSequence(words))


class EpochSampler(Sampler[ItemKey]):
    """Yields ``ItemKey(seed, epoch, index)``: a DistributedSampler's shuffled share of the data
    set for this rank, tagged with the epoch (``set_epoch``) so the dataset can seed the item."""

    def __init__(self, dataset: Sized, rank: int, world_size: int, seed: int) -> None:
        # DistributedSampler only takes len() of the data set (its annotation asks for a Dataset)
        self.inner: DistributedSampler[int] = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False  # type: ignore[arg-type]
        )
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[ItemKey]:
        return (ItemKey(self.seed, self.epoch, i) for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


class ShardSampler(Sampler[int]):
    """Every index exactly once across ranks (no padding, unlike DistributedSampler): exact eval counts."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


__all__ = ["EpochSampler", "ItemKey", "ShardSampler", "as_key", "item_rng"]

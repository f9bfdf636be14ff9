"""In-memory image sets, the held-out split, and batching with optional augmentation.

Everything stays a uint8 tensor until a batch is handed out: the integer model consumes raw
pixels, and the float model sees ``pixel / 255`` (no mean/std normalisation) so both agree
on what an input is.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import MicromixError


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors elementwise is not equality
class ImageSet:
    images: torch.Tensor  # uint8, N x C x H x W
    labels: torch.Tensor  # int64, N
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be uint8 N x C x H x W, got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels must be int64 of shape ({self.images.shape[0]},), got {self.labels.dtype} {tuple(self.labels.shape)}"
            )
        object.__setattr__(self, "classes", tuple(self.classes))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        return tuple(int(d) for d in self.images.shape[1:])  # type: ignore[return-value]

    def take(self, indices: torch.Tensor | Sequence[int]) -> ImageSet:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return ImageSet(self.images[idx], self.labels[idx], self.classes)

    def subset(self, n: int, seed: int) -> ImageSet:
        """A deterministic random subset of ``n`` images (all of them if ``n >= len``)."""
        if n >= len(self):
            return self
        g = torch.Generator().manual_seed(seed)
        # Sorted so a subset keeps the original order; only membership is random.
        return self.take(torch.randperm(len(self), generator=g)[:n].sort().values)


@dataclass(frozen=True, eq=False)
class DataSplits:
    train: ImageSet  # the float model trains only on this
    heldout: ImageSet  # carved out of the training images; policies are scored on it
    test: ImageSet  # reported once, never used for decisions

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train.classes


def heldout_indices(n: int, heldout: int, split_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) index tensors, both sorted, disjoint and covering ``range(n)``.

    The permutation depends only on ``split_seed`` (not the run's seed) so that every run
    scores its policies on exactly the same images.
    """
    if not 0 <= heldout < n:
        raise MicromixError(
            f"cannot hold out {heldout} of {n} training images; choose a held-out size between 0 and {n - 1}."
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    return perm[heldout:].sort().values, perm[:heldout].sort().values


def split_heldout(ds: ImageSet, heldout: int, split_seed: int = 0) -> tuple[ImageSet, ImageSet]:
    train_idx, held_idx = heldout_indices(len(ds), heldout, split_seed)
    return ds.take(train_idx), ds.take(held_idx)


Size = int | tuple[int, int]


def _hw(size: Size) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 1 or w < 1:
        raise MicromixError(f"image size must be positive, got {h}x{w} pixels.")
    return h, w


def resize_images(images: torch.Tensor, resolution: Size, in_channels: int) -> torch.Tensor:
    """Bilinear resize of uint8 images to ``resolution`` (H = W, or an (H, W) pair) and
    grey -> RGB channel repeat."""
    h_out, w_out = _hw(resolution)
    n, c, h, w = images.shape
    if c != in_channels and not (c == 1 and in_channels == 3):
        raise MicromixError(
            f"cannot turn {c}-channel images into {in_channels} channels; use an input shape with 1 or 3 channels."
        )
    if (h, w) == (h_out, w_out) and c == in_channels:
        return images.contiguous()
    out = torch.empty((n, in_channels, h_out, w_out), dtype=torch.uint8)
    # Antialiasing only matters when shrinking; without it downsampling aliases badly.
    shrinking = h_out < h or w_out < w
    # Chunks of ~32 MB of float32 output bound the peak memory at any image size.
    step = max(1, (32 << 20) // (4 * c * h_out * w_out))
    for start in range(0, n, step):
        x = images[start : start + step].float()
        if (h, w) != (h_out, w_out):
            x = F.interpolate(
                x, size=(h_out, w_out), mode="bilinear", align_corners=False, antialias=shrinking
            )
        # Grey -> RGB broadcasts on assignment: no 3-channel copy of the whole set.
        out[start : start + step] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out


def num_batches(n: int, batch_size: int, world_size: int = 1, drop_last: bool = False) -> int:
    """Batches each rank gets per epoch from ``n`` samples (matches :func:`batches`)."""
    per_rank = n // world_size if drop_last else math.ceil(n / world_size)
    return per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)


def _generator(*key: int) -> torch.Generator:
    # SeedSequence mixes the tuple properly, so (seed, epoch) and (seed + 1, epoch - 1) differ.
    state = np.random.SeedSequence([k & 0xFFFFFFFF for k in key]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)


def _shard(
    n: int, order: torch.Tensor, rank: int, world_size: int, drop_last: bool
) -> torch.Tensor:
    """This rank's part of ``order``, padded by wrapping as DistributedSampler does."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world_size {world_size}")
    if drop_last:
        order = order[: n - n % world_size]
    else:
        total = math.ceil(n / world_size) * world_size
        if total > n:
            order = torch.cat([order] * math.ceil(total / n))[:total]
    return order[rank::world_size]


def augment_batch(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding plus random horizontal flip, on a uint8 batch."""
    b, _, h, w = x.shape
    pad = max(1, h // 14)  # 2 px at 28 px, scaled with the resolution
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    flip = torch.rand(b, generator=g) < 0.5
    rows = oy[:, None] + torch.arange(h)  # b x h
    cols = ox[:, None] + torch.arange(w)  # b x w
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    bi = torch.arange(b)[:, None, None]
    # Advanced indexing gathers every crop at once: result is b x h x w x c.
    out = xp.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class Sampling:
    """How one pass walks a data set: shuffled by (seed, epoch) or in order, augmented or not,
    as the shard of process `rank` of `world_size`, with or without the last partial batch."""

    shuffle: bool = False
    seed: int = 0
    epoch: int = 0
    augment: bool = False
    rank: int = 0
    world_size: int = 1
    drop_last: bool = False


def batches(
    ds: ImageSet,
    batch_size: int,
    sampling: Sampling = Sampling(),
    *,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y): float32 x = pixel / 255 of shape N x C x H x W on ``device``, int64 y.

    The order depends only on (seed, epoch), so every rank computes the same permutation and
    takes a disjoint shard of it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    s, n = sampling, len(ds)
    order = (
        torch.randperm(n, generator=_generator(s.seed, s.epoch)) if s.shuffle else torch.arange(n)
    )
    idx = _shard(n, order, s.rank, s.world_size, s.drop_last) if s.world_size > 1 else order
    # Per-rank stream so ranks do not apply identical crops to their different images.
    aug_gen = _generator(s.seed, s.epoch, s.rank, 1) if s.augment else None
    stop = len(idx) - len(idx) % batch_size if s.drop_last else len(idx)
    for start in range(0, stop, batch_size):
        bidx = idx[start : start + batch_size]
        x = ds.images[bidx]
        if aug_gen is not None:
            x = augment_batch(x, aug_gen)
        # Move uint8 first: a quarter of the bytes of float32 cross the bus.
        x = x.to(device, non_blocking=True).float().div_(255.0)
        yield x, ds.labels[bidx].to(device, non_blocking=True)

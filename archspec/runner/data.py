"""Data: an ImageFolder tree or the built-in synthetic set, the standard ImageNet preprocessing,
and a deterministic, resumable, rank-aware batch order.

Every random choice is a function of (seed, epoch, sample index): a resumed or multi-process
run sees exactly the images, crops and flips an uninterrupted single-process run would.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler
from torchvision import datasets
from torchvision.transforms import v2

from ..errors import SpecError
from ..reader import IMAGE, check_directory, read_bytes

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CENTER_CROP = 0.875  # val: resize to R / 0.875, centre-crop R
CORRUPT = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def train_transform(resolution: int, crop_scale: tuple[float, float], hflip: bool) -> v2.Compose:
    ops: list[Any] = [v2.RandomResizedCrop(resolution, scale=crop_scale, antialias=True)]
    if hflip:
        ops.append(v2.RandomHorizontalFlip())
    return v2.Compose(
        [*ops, v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )


def val_transform(resolution: int) -> v2.Compose:
    return v2.Compose(
        [
            v2.Resize(round(resolution / CENTER_CROP), antialias=True),
            v2.CenterCrop(resolution),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


# --------------------------------------------------------------------------------------------
# the synthetic set

SHAPES = ("disc", "square", "triangle", "plus", "ring", "hbar", "vbar", "diamond", "x", "frame")


def _shape_mask(kind: str, dx: np.ndarray, dy: np.ndarray, size: float) -> np.ndarray:
    r = np.hypot(dx, dy)
    ax, ay = np.abs(dx), np.abs(dy)
    box = np.maximum(ax, ay)
    thin = size / 3
    if kind == "disc":
        return r < size
    if kind == "square":
        return box < 0.85 * size
    if kind == "triangle":  # apex up (image y grows downwards)
        return (dy < 0.8 * size) & (dy > -size) & (ax < (dy + size) * 0.6)
    if kind == "plus":
        return ((ax < thin) & (ay < size)) | ((ay < thin) & (ax < size))
    if kind == "ring":
        return (r < size) & (r > 0.6 * size)
    if kind == "hbar":
        return (ay < thin) & (ax < size)
    if kind == "vbar":
        return (ax < thin) & (ay < size)
    if kind == "diamond":
        return ax + ay < size
    if kind == "x":
        return ((np.abs(dx - dy) < 0.6 * thin) | (np.abs(dx + dy) < 0.6 * thin)) & (box < 0.8 * size)
    if kind == "frame":
        return (box < 0.85 * size) & (box > 0.55 * size)
    raise ValueError(kind)


@functools.lru_cache(maxsize=8)
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    coords = ((np.arange(n) + 0.5) / n * 2 - 1).astype(np.float32)
    xx, yy = np.meshgrid(coords, coords)
    return xx, yy


class SyntheticShapes(Dataset):
    """A procedurally generated classification set: each class is a shape, drawn at a random
    scale and position, in a random colour over a random background with noise. Image i of a
    split is a pure function of (seed, split, i): the set is the same on every machine."""

    def __init__(self, size: int, classes: int, canvas: int, split: str, seed: int = 0) -> None:
        self.size, self.classes, self.canvas = size, classes, canvas
        self.split_key = {"train": 1, "val": 2}[split]
        self.seed = seed
        self.classes_names = list(SHAPES[:classes])

    def __len__(self) -> int:
        return self.size

    def label(self, index: int) -> int:
        return index % self.classes

    def image(self, index: int) -> Image.Image:
        rng = np.random.default_rng([self.seed, self.split_key, index])
        xx, yy = _grid(self.canvas)
        size = rng.uniform(0.28, 0.6)
        cx, cy = rng.uniform(-0.9 + size, 0.9 - size, size=2)
        mask = _shape_mask(SHAPES[self.label(index)], xx - cx, yy - cy, size)
        background = rng.uniform(0, 1, size=3).astype(np.float32)
        foreground = rng.uniform(0, 1, size=3).astype(np.float32)
        while np.abs(foreground - background).sum() < 0.6:  # keep the shape visible
            foreground = rng.uniform(0, 1, size=3).astype(np.float32)
        gradient = rng.uniform(-0.15, 0.15, size=3).astype(np.float32) * xx[..., None]
        image = np.where(mask[..., None], foreground, background + gradient)
        image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(rng.uniform(0.02, 0.12))
        return Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return self.image(index), self.label(index)


# --------------------------------------------------------------------------------------------
# ImageFolder


def _path(path: str) -> str:
    return path


def _image_folder(root: Path) -> datasets.ImageFolder:
    if not os.path.lexists(root):
        raise SpecError(
            f"{root}: no such directory (expected an ImageFolder tree with train/ and val/)", parameter="data"
        )
    check_directory(root, parameter="data", what="dataset")
    try:
        return datasets.ImageFolder(str(root), loader=_path)  # images are opened lazily, safely
    except FileNotFoundError as exc:
        # torchvision: "Found no valid file for the classes x, y. Supported extensions are: ..."
        raise SpecError(
            f"{root}: {str(exc).split('. Supported')[0]} (an empty class folder?)", parameter="data"
        ) from None


@dataclass
class Folder:
    """An ImageFolder split whose images are opened on demand."""

    tree: datasets.ImageFolder

    def __len__(self) -> int:
        return len(self.tree.samples)

    def label(self, index: int) -> int:
        return self.tree.samples[index][1]

    def image(self, index: int) -> Image.Image:
        """The image, read by archspec's reader (a FIFO, a device or an over-large file among the
        images is unreadable, and skipped as a corrupt image is)."""
        try:
            data = read_bytes(self.tree.samples[index][0], IMAGE)
        except SpecError as exc:
            raise OSError(exc.line()) from None
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB")


def open_splits(data: Optional[Path], synthetic: Any, seed: int) -> tuple[Any, Any, list[str]]:
    """(train, val, class names) for --data DIR or the synthetic set."""
    if data is None:
        train = SyntheticShapes(synthetic.train_size, synthetic.classes, synthetic.canvas, "train", seed)
        val = SyntheticShapes(synthetic.val_size, synthetic.classes, synthetic.canvas, "val", seed)
        return train, val, train.classes_names
    data = check_directory(data, parameter="data", what="dataset")
    train, val = _image_folder(data / "train"), _image_folder(data / "val")
    if train.classes != val.classes:
        raise SpecError(f"{data}: train/ and val/ have different class folders", parameter="data")
    return Folder(train), Folder(val), train.classes


class Transformed(Dataset):
    """(tensor, label, corrupt images skipped) with per-sample randomness seeded by
    (seed, epoch, index). A corrupt image is replaced by the next readable one and counted."""

    def __init__(self, source: Any, transform: Any, seed: int) -> None:
        self.source, self.transform, self.seed = source, transform, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.source)

    def _load(self, index: int) -> tuple[Image.Image, int, int]:
        skipped = 0
        for attempt in range(len(self.source)):
            i = (index + attempt) % len(self.source)
            try:
                return self.source.image(i), self.source.label(i), skipped
            except CORRUPT:
                skipped += 1
        raise SpecError("no readable image in the dataset", parameter="data")

    def _sample(self, index: int) -> tuple[torch.Tensor, int, int]:
        image, label, skipped = self._load(index)
        # the CPU generator only: torch.manual_seed would also queue a (costly) lazy CUDA seeding
        torch.default_generator.manual_seed(((self.seed * 1_000_003 + self.epoch) * 1_000_000_007 + index) % (1 << 63))
        return self.transform(image), label, skipped

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int, int]]:
        # one fork of the global generator per batch: the transforms draw from it
        with torch.random.fork_rng(devices=[]):
            return [self._sample(i) for i in indices]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        return self.__getitems__([index])[0]


def collate(batch: list[tuple[torch.Tensor, int, int]]) -> tuple[torch.Tensor, torch.Tensor, int]:
    images, labels, skipped = zip(*batch)
    return torch.stack(images), torch.tensor(labels), sum(skipped)


class GlobalBatches(Sampler[list[int]]):
    """Yields this rank's micro-batches: each global batch of the epoch's permutation is cut into
    `world * accum` micro-batches; rank r takes micro-batches r, r + world, ... Starting at a
    given step resumes the epoch exactly. Incomplete global batches are dropped."""

    def __init__(self, length: int, global_batch: int, accum: int, world: int, rank: int, seed: int) -> None:
        if global_batch % (accum * world):
            raise SpecError(
                f"the global batch {global_batch} does not split into {accum} accumulation steps x {world} processes",
                parameter="batch_size",
            )
        self.length, self.global_batch, self.accum, self.world, self.rank = length, global_batch, accum, world, rank
        self.micro = global_batch // (accum * world)
        self.seed = seed
        self.epoch, self.start_step = 0, 0

    @property
    def steps_per_epoch(self) -> int:
        return self.length // self.global_batch

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(
            self.length, generator=torch.Generator().manual_seed((self.seed * 100_003 + self.epoch) % (1 << 63))
        )
        for step in range(self.start_step, self.steps_per_epoch):
            batch = order[step * self.global_batch : (step + 1) * self.global_batch]
            for a in range(self.accum):
                k = a * self.world + self.rank
                yield batch[k * self.micro : (k + 1) * self.micro].tolist()

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.accum


def eval_batches(length: int, batch: int) -> list[list[int]]:
    """Contiguous evaluation batches covering every sample once."""
    return [list(range(i, min(i + batch, length))) for i in range(0, length, batch)]


def default_workers(requested: Any) -> int:
    if requested != "auto":
        return int(requested)
    from .distributed import cores

    # on a small CPU box the model wants every core; decoding in the main process keeps it simple
    n = cores()
    return 0 if n <= 4 else min(8, n // 2)

"""Lab training data over any folder of colour photos.

Photos are decoded once into a cache of small uint8 arrays (longer side ≤ ``cache_max_side``), so a
training step pays only for a crop, a resize and a Lab conversion, and 2 CPU cores stay busy with the model.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from train.hints import sample_global_hint, sample_local_hints
from train.lab import bgr_to_lab

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MIN_SIDE = 48  # photos smaller than this on their shorter side teach little and are skipped


def list_images(root: str) -> list[str]:
    """Image files under root, recursively, as sorted relative paths."""
    found = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name.lower().endswith(IMAGE_SUFFIXES):
                found.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(found)


def path_hash(relpath: str) -> float:
    """A stable number in [0, 1) per photo path: the splits are bands of it."""
    digest = hashlib.sha1(relpath.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def is_validation(relpath: str, fraction: float) -> bool:
    """A stable split: a photo is held out when the hash of its path falls below the fraction."""
    return path_hash(relpath) < fraction


def is_calibration(relpath: str, val_fraction: float, calib_fraction: float) -> bool:
    """The calibration split: the band of hashes just above validation, never trained on or evaluated."""
    return val_fraction <= path_hash(relpath) < val_fraction + calib_fraction


def split_images(root: str, fraction: float, calib_fraction: float = 0.0) -> tuple[list[str], list[str], list[str]]:
    """Train, validation and calibration photos (relative paths); the three never overlap."""
    files = list_images(root)
    val = [f for f in files if is_validation(f, fraction)]
    calib = [f for f in files if is_calibration(f, fraction, calib_fraction)]
    train = [f for f in files if path_hash(f) >= fraction + calib_fraction]
    return train, val, calib


def read_bgra(path: str) -> np.ndarray | None:
    """Read a photo as uint8 BGRA (alpha 255 when the file has none); None when unreadable."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        return None
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGRA)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
    return img


def load_cached(root: str, relpaths: list[str], cache_dir: str, max_side: int) -> list[np.ndarray]:
    """Decoded, downscaled BGRA arrays for each photo, reading from or filling the on-disk cache."""
    os.makedirs(cache_dir, exist_ok=True)
    images = []
    for rel in relpaths:
        key = hashlib.sha1(f"{rel}:{max_side}".encode()).hexdigest()
        cached = os.path.join(cache_dir, f"{key}.npy")
        if os.path.exists(cached):
            images.append(np.load(cached))
            continue
        img = read_bgra(os.path.join(root, rel))
        if img is None:
            log.warning("skipping unreadable image %s", rel)
            continue
        scale = max_side / max(img.shape[:2])
        if scale < 1:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        np.save(cached + ".tmp.npy", img)
        os.replace(cached + ".tmp.npy", cached)
        images.append(img)
    return [im for im in images if min(im.shape[:2]) >= MIN_SIDE]


PLAIN_BACKDROP_SHARE = 0.3  # default share of cut-outs pasted on a plain gray backdrop rather than on a photo


def has_cutout(img: np.ndarray) -> bool:
    """True for cut-outs: a real share of the pixels is transparent."""
    return bool((img[:, :, 3] < 128).mean() > 0.02)


@dataclass
class Sample:
    lightness: np.ndarray  # (1, S, S) float32, L in [0, 100]
    ab: np.ndarray  # (2, S/2, S/2) float32, ab in Lab units
    ab_full: np.ndarray  # (2, S, S) float32, ab at the input size (where local hints are taken)


def random_crop(img: np.ndarray, size: int, min_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A random square crop of random scale, resized to size×size, randomly flipped."""
    h, w = img.shape[:2]
    short = min(h, w)
    side = int(rng.uniform(min_fraction, 1.0) * short)
    side = max(side, min(short, size // 2))  # upscale by at most 2× where the photo allows
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = img[y : y + side, x : x + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (size, size), interpolation=interp)
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def composite(background: np.ndarray, cutout: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paste a BGRA cut-out, at a random scale and place, over a BGR(A) background crop."""
    size = background.shape[0]
    h, w = cutout.shape[:2]
    scale = rng.uniform(0.5, 1.0) * size / max(h, w)
    cut = cv2.resize(cutout, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    ch, cw = cut.shape[:2]
    y, x = rng.integers(0, size - ch + 1), rng.integers(0, size - cw + 1)
    out = background[:, :, :3].astype(np.float32)
    alpha = cut[:, :, 3:4].astype(np.float32) / 255.0
    region = out[y : y + ch, x : x + cw]
    out[y : y + ch, x : x + cw] = alpha * cut[:, :, :3] + (1 - alpha) * region
    return out.astype(np.uint8)


def plain_backdrop(size: int, rng: np.random.Generator) -> np.ndarray:
    """A neutral backdrop (B = G = R, so ab is exactly 0) of random lightness, half of them flat (a cut-out
    flattened on one colour, as the evaluation and many users present them) and half with a gentle ramp in a random
    direction (studio paper, a lit wall, a scanned page's margin). With ramps only (the third training cycle) the
    model took a perfectly flat gray for sky more often than with flat ones only, so it sees both."""
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    slope = rng.uniform(-40, 40) if rng.random() < 0.5 else 0.0
    ramp = slope * (np.cos(angle) * xx + np.sin(angle) * yy)
    gray = np.clip(rng.uniform(30, 226) + ramp, 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def to_sample(bgr: np.ndarray) -> Sample:
    """uint8 BGR crop (S, S, 3) -> L at S and ab at S/2, via OpenCV's Lab."""
    lab = bgr_to_lab(np.ascontiguousarray(bgr[:, :, :3]))
    size = lab.shape[0]
    ab = cv2.resize(lab[:, :, 1:], (size // 2, size // 2), interpolation=cv2.INTER_AREA)
    return Sample(lab[None, :, :, 0].copy(), ab.transpose(2, 0, 1).copy(), lab[:, :, 1:].transpose(2, 0, 1).copy())


def hint_tensors(s: Sample, centres: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    """Training hints for one sample: hint_ab (2, S, S), hint_mask (1, S, S), global_hint (Q + 1,)."""
    hint_ab, mask = sample_local_hints(s.ab_full, rng)
    small = s.ab[:, ::2, ::2]  # (2, S/4, S/4) is plenty for a distribution over 10-unit bins
    return torch.from_numpy(hint_ab), torch.from_numpy(mask), torch.from_numpy(sample_global_hint(small, centres, rng))


class RandomCrops(IterableDataset[tuple[torch.Tensor, ...]]):
    """An endless stream of augmented (L, ab) crops, plus sampled hints when ``centres`` is given;
    photos drawn with weight ∝ √pixels.

    The √ weighting keeps hundreds of small stamps and 320 px thumbnails from crowding out the large
    photos, without letting a few 2560 px wallpapers take over. It also makes the small cut-outs rarer than
    their count: about half the photos but 31% of the draws. ``cutout_share`` (when > 0) fixes their share of
    the draws instead, still √-weighted within cut-outs and within photos.
    """

    def __init__(
        self,
        images: list[np.ndarray],
        size: int,
        min_fraction: float,
        seed: int,
        centres: np.ndarray | None = None,
        plain_share: float = PLAIN_BACKDROP_SHARE,
        cutout_share: float = 0.0,
        full_res: bool = False,
    ) -> None:
        self.plain_share, self.full_res = plain_share, full_res  # full_res: ab at S (ModelArgs.full_res), not S/2
        self.photos = [im for im in images if not has_cutout(im)]
        self.cutouts = [im for im in images if has_cutout(im)]
        self.size, self.min_fraction, self.seed, self.centres = size, min_fraction, seed, centres
        weights = np.array([np.sqrt(im.shape[0] * im.shape[1]) for im in images])
        if cutout_share > 0 and self.photos and self.cutouts:
            cut = np.array([has_cutout(im) for im in images])
            weights = np.where(cut, cutout_share * weights / weights[cut].sum(), weights)
            weights = np.where(cut, weights, (1 - cutout_share) * weights / weights[~cut].sum())
        self.order = images
        self.p = weights / weights.sum()

    def backdrop(self, rng: np.random.Generator) -> np.ndarray:
        """What a cut-out is pasted on: usually a crop of a photo, sometimes (a share ``plain_share``) a plain
        neutral backdrop. Without the plain ones the model never saw a large featureless area that is truly gray (a
        studio backdrop, a scanned page's margin, an overcast sky) and tinted them all."""
        if rng.random() < self.plain_share:
            return plain_backdrop(self.size, rng)
        return random_crop(self.photos[rng.integers(len(self.photos))], self.size, self.min_fraction, rng)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        info = get_worker_info()
        rank = int(os.environ.get("RANK", "0"))
        rng = np.random.default_rng([self.seed, rank, info.id if info else 0])
        while True:
            img = self.order[rng.choice(len(self.order), p=self.p)]
            if has_cutout(img) and self.photos:
                crop = composite(self.backdrop(rng), img, rng)
            else:
                crop = random_crop(img, self.size, self.min_fraction, rng)
            s = to_sample(crop)
            hints = () if self.centres is None else hint_tensors(s, self.centres, rng)
            yield torch.from_numpy(s.lightness), torch.from_numpy(s.ab_full if self.full_res else s.ab), *hints


def validation_batch(images: list[np.ndarray], size: int, full_res: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic whole-image views of the held-out photos (squeezed to S×S, as the service does): L, and ab at
    S/2 (at S with ``full_res``)."""
    samples = []
    for img in images:
        bgr = img[:, :, :3]
        if has_cutout(img):  # composite on mid-gray, deterministically
            a = img[:, :, 3:4].astype(np.float32) / 255.0
            bgr = (a * bgr + (1 - a) * 128).astype(np.uint8)
        samples.append(to_sample(cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA)))
    lightness = torch.from_numpy(np.stack([s.lightness for s in samples]))
    return lightness, torch.from_numpy(np.stack([s.ab_full if full_res else s.ab for s in samples]))

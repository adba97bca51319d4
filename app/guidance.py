"""Colour guidance from a person (Zhang et al. 2017): points, a palette, a reference photo -> the model's hint inputs.

What the user says is parsed and checked once (``parse_hints``), then turned into arrays at model resolution for
one image (``Guidance.for_image``). Colours go through the same OpenCV Lab conversion as everything else in the
service; only their a and b are used, the lightness stays the photo's. The bin centres for a global hint come from
the model file (``colorizer.ab_bins``), so the service holds no model constants.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from app.decode import decode_small_bgra
from app.errors import ColorizerError
from app.image_header import Header

MAX_POINTS = 256  # far more than a person places by hand; bounds the work a request can ask for
MAX_PALETTE = 32
DEFAULT_RADIUS_CELLS = 1.0  # a point without a radius covers about a 3×3 patch of the model grid (training used 1–4)
REFERENCE_SIZE = 64  # a reference photo's colour distribution is taken at this size: plenty for 10-unit ab bins
HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
# A palette names colours, not how much of the photo each one covers. Training's palette-like hints carry the
# truth's area shares (train/hints.py), in which near-neutral colours take most of a photo: on the train split's
# photos a palette colour within NEUTRAL_CHROMA ab units of gray covers NEUTRAL_WEIGHT times as much as a coloured
# one, and the chroma bands above are flat (fitted by python -m train.palettes, which also scores it).
NEUTRAL_CHROMA = 5.0
NEUTRAL_WEIGHT = 2.5
KINDS = ("none", "points", "global", "both")  # the label requests are counted by (colorizer_guided_requests_total)


def invalid(detail: str) -> ColorizerError:
    return ColorizerError("invalid_hints", detail)


def hints_unsupported(model_version: str) -> ColorizerError:
    return ColorizerError(
        "hints_unsupported",
        f"the loaded model ({model_version}) takes no colour hints; send the image without hints or reference, "
        "or serve a model exported with hint inputs",
    )


def colour_ab(text: str) -> tuple[float, float]:
    """'#rrggbb' -> (a, b) in Lab units, by OpenCV's conversion of float32 BGR in [0, 1], as the service does."""
    r, g, b = (int(text[i : i + 2], 16) for i in (1, 3, 5))
    bgr = np.array([[[b, g, r]]], np.float32) / 255.0
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab)[0, 0]
    return float(lab[1]), float(lab[2])


@dataclass(frozen=True)
class Point:
    x: float  # pixels of the orientation-corrected input
    y: float
    ab: tuple[float, float]
    radius: float | None  # pixels; None = the default patch


@dataclass(frozen=True)
class ModelHints:
    """The three hint inputs for one image, at model resolution."""

    hint_ab: np.ndarray  # (2, S, S) float32 raw ab, 0 where no hint
    hint_mask: np.ndarray  # (1, S, S) float32
    global_hint: np.ndarray  # (Q + 1,) float32: a distribution over the bins, then the flag; zeros = none

    @property
    def has_points(self) -> bool:
        return bool(self.hint_mask.any())


@dataclass(frozen=True)
class Guidance:
    """Everything a request says about colour; empty means automatic."""

    points: tuple[Point, ...] = ()
    palette: tuple[tuple[float, float], ...] = ()  # ab of each colour
    reference: np.ndarray | None = field(default=None, compare=False)  # (Q,) distribution over the model's bins

    @property
    def kind(self) -> str:
        """none, points, global or both: the label requests are counted by."""
        has_global = bool(self.palette) or self.reference is not None
        return KINDS[bool(self.points) + 2 * has_global]

    def __bool__(self) -> bool:
        return self.kind != "none"

    def for_image(self, width: int, height: int, size: int, bins: np.ndarray) -> ModelHints:
        """Hint inputs for an image of width × height squeezed to size × size. A point outside the image is
        invalid_hints. ``bins``: (Q, 2) the model's bin centres."""
        hint_ab = np.zeros((2, size, size), np.float32)
        mask = np.zeros((1, size, size), np.float32)
        for i, p in enumerate(self.points):
            if not (0 <= p.x < width and 0 <= p.y < height):
                raise invalid(f"point {i} at ({p.x:g}, {p.y:g}) is outside the {width}×{height} image")
            paint_point(hint_ab, mask, p, width, height)
        return ModelHints(hint_ab, mask, self.global_hint(bins))

    def global_hint(self, bins: np.ndarray) -> np.ndarray:
        """The reference photo's distribution when there is one (it wins over the palette), else the palette's
        (palette_distribution); zeros when neither."""
        if self.reference is not None:
            dist = self.reference
        elif self.palette:
            dist = palette_distribution(self.palette, bins)
        else:
            return np.zeros(len(bins) + 1, np.float32)
        return np.concatenate([dist.astype(np.float32), np.ones(1, np.float32)])


def palette_distribution(
    palette: tuple[tuple[float, float], ...] | np.ndarray, bins: np.ndarray, neutral_weight: float = NEUTRAL_WEIGHT
) -> np.ndarray:
    """(Q,) the palette's colours (K, 2: a request's ab pairs, or an array) on their nearest bins, weighted by
    palette_weights, summing to 1."""
    ab = np.array(palette, np.float32)  # (K, 2)
    return colours_on_bins(ab, palette_weights(ab, neutral_weight), bins)


def palette_weights(ab: np.ndarray, neutral_weight: float = NEUTRAL_WEIGHT) -> np.ndarray:
    """(K,) for colours (K, 2): ``neutral_weight`` for a near-neutral one (the area it is likely to cover), else 1."""
    weights: np.ndarray = np.where(np.hypot(ab[:, 0], ab[:, 1]) < NEUTRAL_CHROMA, neutral_weight, 1.0)
    return weights


def colours_on_bins(ab: np.ndarray, weights: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """(Q,) colours (K, 2) put on their nearest bins with their weights (K,), normalised to sum to 1."""
    dist = np.zeros(len(bins), np.float32)
    np.add.at(dist, nearest_bin(ab, bins), weights)
    normalised: np.ndarray = dist / dist.sum()
    return normalised


NO_GUIDANCE = Guidance()


def paint_point(hint_ab: np.ndarray, mask: np.ndarray, p: Point, width: int, height: int) -> None:
    """Mark the grid cells a point covers: the photo is squeezed to S×S as a whole, so a round radius in photo
    pixels is an ellipse on the grid when the photo is not square. The point's own cell is always covered."""
    size = mask.shape[-1]
    sx, sy = size / width, size / height
    cx, cy = p.x * sx, p.y * sy  # in grid cells
    rx = p.radius * sx if p.radius is not None else DEFAULT_RADIUS_CELLS
    ry = p.radius * sy if p.radius is not None else DEFAULT_RADIUS_CELLS
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # cell centres
    inside = ((xs - cx) / max(rx, 1e-6)) ** 2 + ((ys - cy) / max(ry, 1e-6)) ** 2 <= 1.0
    inside[min(int(cy), size - 1), min(int(cx), size - 1)] = True
    hint_ab[0][inside], hint_ab[1][inside] = p.ab
    mask[0][inside] = 1.0


def nearest_bin(ab: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """(P, 2) ab -> (P,) index of each one's nearest bin centre."""
    d2 = ((ab[:, None, :] - bins[None, :, :]) ** 2).sum(-1)  # (P, Q)
    index: np.ndarray = d2.argmin(1)
    return index


def reference_colours(data: bytes, header: Header, bins: np.ndarray) -> np.ndarray:
    """A reference photo's bytes (header already checked) -> its ab distribution over the bins (Q,)."""
    return reference_distribution(decode_small_bgra(data, header, REFERENCE_SIZE), bins)


def reference_distribution(image: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """A decoded reference photo (uint8 BGR, or BGRA) -> its ab distribution over the bins (Q,), at a small size.
    With alpha, each pixel counts as much as it is opaque: the colour stored under a transparent background is
    not part of the picture (often black or white, which would pull the distribution to gray)."""
    small = cv2.resize(image, (REFERENCE_SIZE, REFERENCE_SIZE), interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(small[:, :, :3].astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab)
    weights = small[:, :, 3].reshape(-1).astype(np.float32) if small.shape[2] == 4 else None
    if weights is not None and weights.sum() == 0:
        raise invalid("the reference photo is fully transparent: it has no colours to take")
    index = nearest_bin(lab[:, :, 1:].reshape(-1, 2), bins)
    counts = np.bincount(index, weights=weights, minlength=len(bins)).astype(np.float32)
    dist: np.ndarray = counts / counts.sum()
    return dist


def parse_hints(text: str | None, *, points_allowed: bool = True) -> Guidance:
    """The multipart ``hints`` field -> Guidance, or invalid_hints with a sentence that names what is wrong.
    ``points_allowed`` false: batches and videos take only a palette, applied to every image or frame."""
    if text is None or not text.strip():
        return Guidance()
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise invalid(f"hints is not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(data, dict):
        raise invalid('hints must be a JSON object such as {"points": [...], "palette": [...]}')
    allowed = {"points", "palette"} if points_allowed else {"palette"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        if "points" in unknown and not points_allowed:
            raise invalid("points apply to one photo; here hints take only a palette, applied to every image")
        raise invalid(f"unknown key {unknown[0]!r} in hints; expected {' and '.join(sorted(allowed))}")
    return Guidance(_points(data.get("points", [])), _palette(data.get("palette", [])))


def _colour(value: Any, where: str) -> tuple[float, float]:
    if not isinstance(value, str) or not HEX_COLOUR.match(value):
        raise invalid(f"{where} colour {value!r} is not a #rrggbb colour")
    return colour_ab(value)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise invalid(f"{where} must be a number, not {value!r}")
    return float(value)


def _points(raw: Any) -> tuple[Point, ...]:
    if not isinstance(raw, list):
        raise invalid("hints.points must be a list of {x, y, color, radius?} objects")
    if len(raw) > MAX_POINTS:
        raise invalid(f"hints has {len(raw)} points; the limit is {MAX_POINTS}")
    points = []
    for i, item in enumerate(raw):
        where = f"point {i}"
        if not isinstance(item, dict):
            raise invalid(f"{where} must be an object with x, y and color")
        missing = [k for k in ("x", "y", "color") if k not in item]
        if missing:
            raise invalid(f"{where} lacks {missing[0]!r}")
        extra = sorted(set(item) - {"x", "y", "color", "radius"})
        if extra:
            raise invalid(f"{where} has unknown key {extra[0]!r}; expected x, y, color and radius")
        radius = None if item.get("radius") is None else _number(item["radius"], f"{where} radius")
        if radius is not None and radius < 0:
            raise invalid(f"{where} radius {radius:g} is negative")
        x, y = _number(item["x"], f"{where} x"), _number(item["y"], f"{where} y")
        points.append(Point(x, y, _colour(item["color"], where), radius))
    return tuple(points)


def _palette(raw: Any) -> tuple[tuple[float, float], ...]:
    if not isinstance(raw, list):
        raise invalid('hints.palette must be a list of "#rrggbb" colours')
    if len(raw) > MAX_PALETTE:
        raise invalid(f"the palette has {len(raw)} colours; the limit is {MAX_PALETTE}")
    return tuple(_colour(c, f"palette entry {i}") for i, c in enumerate(raw))

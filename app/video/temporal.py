"""Temporal stability: smooth the model's ab over time, reset at scene cuts, and measure what is left.

A colouriser that sees each frame alone picks slightly different colours for the same wall from one frame to
the next; on screen that is flicker. The cure is cheap because the model's ab is small (S/k × S/k): keep an
exponential moving average of it, but per pixel trust history only where L did not change (moving edges take
the new prediction, so colour does not trail behind motion), and forget all history at a scene cut (a large
mean change of L), so one shot's colours never bleed into the next.
"""

from __future__ import annotations

import cv2
import numpy as np

DEFAULT_SMOOTHING = 0.7  # weight of the past in the moving average; 0 turns smoothing off (docs/VIDEO.md)
DEFAULT_SCENE_CUT = 12.0  # mean |ΔL| between consecutive model-size frames (L units) that counts as a cut
MOTION_L = 8.0  # a pixel whose L changed by this much (or more) ignores its history
STABLE_L = 2.0  # the flicker measure looks only at pixels whose L changed less than this


def mean_l_change(previous: np.ndarray, current: np.ndarray) -> float:
    """Mean |ΔL| of two equally sized L images, in L units."""
    return float(np.abs(current - previous).mean())


class TemporalSmoother:
    """Per-pixel, motion-gated exponential moving average of ab, reset at scene cuts."""

    def __init__(self, smoothing: float = DEFAULT_SMOOTHING, scene_cut: float = DEFAULT_SCENE_CUT) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"video smoothing must be in [0, 1) (got {smoothing}); 0 turns it off")
        if scene_cut <= 0:
            raise ValueError(f"the scene-cut threshold must be positive L units (got {scene_cut})")
        self.smoothing, self.scene_cut = smoothing, scene_cut
        self._l: np.ndarray | None = None  # (h, w) previous L at ab resolution
        self._ab: np.ndarray | None = None  # (2, h, w) smoothed ab
        self.cuts = 0

    def state(self) -> dict[str, np.ndarray]:
        """What a resumed job needs to go on exactly where this one stopped (saved with each finished chunk)."""
        if self._l is None or self._ab is None:
            return {"cuts": np.array(self.cuts)}
        return {"l": self._l, "ab": self._ab, "cuts": np.array(self.cuts)}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        self._l, self._ab = state.get("l"), state.get("ab")
        self.cuts = int(state["cuts"])

    def update(self, small_l: np.ndarray, ab: np.ndarray) -> np.ndarray:
        """(1, S, S) model input and its (2, h, w) ab -> the smoothed (2, h, w) ab for this frame."""
        if self.smoothing == 0.0:
            return ab
        height, width = ab.shape[1:]
        l_now = small_l[0]
        if l_now.shape != (height, width):
            l_now = cv2.resize(l_now, (width, height), interpolation=cv2.INTER_AREA)  # (h, w)
        previous, state = self._l, self._ab
        self._l = l_now
        if previous is None or state is None or mean_l_change(previous, l_now) > self.scene_cut:
            self.cuts += previous is not None
            self._ab = ab.astype(np.float32, copy=True)
            return ab
        still = np.clip(1.0 - np.abs(l_now - previous) / MOTION_L, 0.0, 1.0)  # (h, w): 1 static, 0 moving
        weight = (self.smoothing * still)[None]  # (1, h, w)
        self._ab = weight * state + (1.0 - weight) * ab
        return self._ab


class FlickerMeter:
    """Flicker: mean |Δa|, |Δb| between consecutive frames over pixels whose L changed by less than 2.

    Fed the Lab of what the viewer sees (the joined output), so the number is in Lab units and includes the
    upsampling and gamut clipping; lower is steadier. ``per_frame`` keeps each pair's value for plots.
    """

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None
        self._sum = 0.0
        self._count = 0
        self.per_frame: list[float] = []

    def add(self, lab: np.ndarray) -> None:
        """One frame's (H, W, 3) float32 Lab."""
        if self._previous is not None:
            stable = np.abs(lab[:, :, 0] - self._previous[:, :, 0]) < STABLE_L  # (H, W)
            change = np.abs(lab[:, :, 1:] - self._previous[:, :, 1:])[stable]  # (n, 2)
            self._sum += float(change.sum())
            self._count += change.size
            self.per_frame.append(float(change.mean()) if change.size else float("nan"))
        self._previous = lab

    def add_bgr(self, bgr: np.ndarray) -> None:
        """One (H, W, 3) uint8 BGR frame."""
        self.add(cv2.cvtColor(bgr.astype(np.float32) * (1.0 / 255.0), cv2.COLOR_BGR2Lab))

    @property
    def value(self) -> float:
        return self._sum / self._count if self._count else 0.0

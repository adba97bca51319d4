"""Fit the global ab calibration, ab ← M·ab (+ t), on the calibration split, and bake it into the graph.

A regression model trained on few photos predicts a saturation that is off, and mixes a and b. A least-squares map
of the predicted ab onto the truth's, over the pixels of photos the model neither trained on nor is evaluated on,
corrects both. The family contains M = 0 (gray), so on the split it is fitted on it never does worse than gray in ab.

The map is a full 2×2 (``form="2x2"``) or a single chroma gain g·I (``form="gain"``): one number fitted on 30
photos cannot learn their particular hues, and a model whose own saturation is about right but whose a/b mixing is
not worth correcting lost ~1 dB out of sample to the 2×2 map (v11's regression head, docs/training_history.md).

By default the map goes through the origin (t = 0): it keeps gray gray, so neutral surfaces stay neutral. An
offset fitted on the 30 calibration photos learnt their average colour, not a cast of the model (at step 1000 it
was t = (0.3, 7.5): a yellow wash on every photo), so it is opt-in (``offset=True``) and the card reports both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from train.data import load_cached, split_images, validation_batch
from train.model import ColorizerNet


@dataclass
class Calibration:
    values: list[float]  # M (row-major 2×2), then t
    photos: int
    rmse_before: float  # ab RMSE on the calibration split, identity map
    rmse_after: float  # ... with the fitted map
    rmse_gray: float  # ... predicting a = b = 0


@torch.no_grad()
def predict_ab(model: ColorizerNet, lightness: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """The model's automatic ab (no hints) before any calibration or chroma shrink: (N, 2, S/2, S/2)."""
    model.eval()
    return torch.cat([model.uncorrected_ab(lightness[i : i + batch]) for i in range(0, len(lightness), batch)])


CALIBRATION_FORMS = ("2x2", "gain")


def fit(pred: np.ndarray, truth: np.ndarray, offset: bool = False, form: str = "2x2") -> list[float]:
    """Least squares [a b (1)]·W ≈ [a_t b_t] over all pixels; pred and truth are (N, 2, h, w). ``form="gain"``
    fits one gain g for both channels instead (through the origin: M = g·I, t = 0)."""
    x = pred.transpose(0, 2, 3, 1).reshape(-1, 2).astype(np.float64)
    y = truth.transpose(0, 2, 3, 1).reshape(-1, 2).astype(np.float64)
    if form == "gain":
        if offset:
            raise ValueError("a calibration gain goes through the origin: it takes no offset")
        g = float((x * y).sum() / max((x * x).sum(), 1e-12))
        return [g, 0.0, 0.0, g, 0.0, 0.0]
    design = np.hstack([x, np.ones((len(x), 1))]) if offset else x  # (P, 3) or (P, 2)
    w, *_ = np.linalg.lstsq(design, y, rcond=None)  # (3, 2) or (2, 2)
    m, t = w[:2].T, (w[2] if offset else np.zeros(2))
    return [float(v) for v in (*m.reshape(-1), *t)]


def apply(values: list[float], ab: np.ndarray) -> np.ndarray:
    m = np.array(values[:4]).reshape(2, 2)
    t = np.array(values[4:])
    return np.einsum("ij,njhw->nihw", m, ab) + t[None, :, None, None]


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def calibrate(
    model: ColorizerNet, data_dir: str, cfg: dict, cache_dir: str = "", offset: bool = False, form: str = "2x2"
) -> Calibration:
    """Fit on the run's calibration split (cfg is the checkpoint's training config) and bake it into ``model``."""
    _, _, calib_files = split_images(data_dir, cfg["val_fraction"], cfg["calib_fraction"])
    if not calib_files:
        raise SystemExit(f"no calibration photos under {data_dir} (calib_fraction {cfg['calib_fraction']})")
    cache = cache_dir or os.path.join(cfg["out_dir"], "cache")
    images = load_cached(data_dir, calib_files, cache, cfg["cache_max_side"])
    lightness, truth = validation_batch(images, cfg["crop_size"], model.args.full_res)
    pred = predict_ab(model, lightness).numpy()
    target = truth.numpy()
    values = fit(pred, target, offset, form)
    model.set_calibration(values)
    return Calibration(
        values, len(images), rmse(pred, target), rmse(apply(values, pred), target), rmse(np.zeros_like(target), target)
    )

"""The sRGB loss term (train/rgb_loss.py): OpenCV's colour, per photo, weighted as the evaluation's PSNR weighs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from train.config import TrainConfig, parse_config
from train.model import AB_NORM, HeadOutput
from train.rgb_loss import lab_to_rgb, log_rgb_mse
from train.train import Objective


def lab_of(bgr: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab)
    return torch.from_numpy(lab[None, None, :, :, 0].copy()), torch.from_numpy(lab[:, :, 1:].transpose(2, 0, 1)[None])


def test_lab_to_rgb_is_opencvs_conversion() -> None:
    bgr = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    bgr[0, :3] = [[0, 0, 0], [1, 1, 1], [0, 0, 1]]  # black, white and a gamut corner
    lightness, ab = lab_of(bgr)
    rgb = lab_to_rgb(lightness, ab)[0].numpy().transpose(1, 2, 0)
    assert np.abs(rgb - bgr[:, :, ::-1]).max() < 1 / 255  # within one uint8 step of what the evaluation decodes


def test_the_term_is_the_mean_of_each_photos_log_mse_in_srgb() -> None:
    rng = np.random.default_rng(1)
    truth_bgr = rng.random((2, 16, 16, 3)).astype(np.float32)
    lightness, ab_true = (torch.cat(t) for t in zip(*(lab_of(b) for b in truth_bgr), strict=True))
    spread = torch.tensor([2.0, 12.0])[:, None, None, None]  # one photo nearly right, one far off
    ab_pred = ab_true + spread * torch.from_numpy(rng.normal(0, 1, ab_true.shape).astype(np.float32))
    expected = []
    for i in range(2):
        lab = np.concatenate([lightness[i].numpy(), ab_pred[i].numpy()]).transpose(1, 2, 0)
        guess = np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2BGR), 0, 1)
        expected.append(np.log(np.mean((guess - truth_bgr[i]) ** 2) + 1e-4))
    got = log_rgb_mse(lightness, ab_pred, ab_true, floor=1e-4).item()
    assert got == pytest.approx(np.mean(expected), abs=0.02)


def test_a_nearly_right_photo_pulls_harder_than_a_wrong_one() -> None:
    """PSNR's log makes a photo's gradient go as 1 / its error: a faint cast on a gray photo costs more dB than the
    same change on a photo already far off. Pooled MSE (or L1) would weigh them the other way round, or alike."""
    lightness = torch.full((2, 1, 8, 8), 60.0)
    ab_true = torch.zeros(2, 2, 8, 8)
    ab_pred = torch.zeros(2, 2, 8, 8)
    ab_pred[0, 1], ab_pred[1, 1] = 2.0, 20.0  # a faint cream on the first gray photo, a strong one on the second
    ab_pred.requires_grad_(True)
    log_rgb_mse(lightness, ab_pred, ab_true, floor=1e-6).backward()
    assert ab_pred.grad is not None
    pull = ab_pred.grad[:, 1].abs().sum(dim=(1, 2))
    assert pull[0] > 5 * pull[1]


def test_the_term_stays_float32_under_bf16_autocast() -> None:
    rng = np.random.default_rng(2)
    lightness, ab_true = lab_of(rng.random((16, 16, 3)).astype(np.float32))
    ab_pred = ab_true + 0.5  # a small error, which bf16's 8 bits of mantissa would blur
    exact = log_rgb_mse(lightness, ab_pred, ab_true, floor=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = log_rgb_mse(lightness.bfloat16(), ab_pred, ab_true, floor=1e-6)
    assert under.dtype == torch.float32
    assert under.item() == pytest.approx(exact.item(), abs=1e-3)


def test_the_objective_adds_the_term_only_when_asked_and_needs_the_lightness() -> None:
    lightness = torch.full((1, 1, 8, 8), 50.0)
    ab = torch.zeros(1, 2, 4, 4)
    guess = torch.full((1, 2, 4, 4), 10.0)
    out = HeadOutput(logits=None, ab_norm=guess / AB_NORM)
    plain = Objective(TrainConfig(head="regression"), None, None)
    weighted = Objective(TrainConfig(head="regression", rgb_log_weight=0.5), None, None)
    term = 0.5 * log_rgb_mse(lightness, guess, ab, 1e-4)
    assert weighted(out, ab, lightness).item() == pytest.approx((plain(out, ab) + term).item())
    with pytest.raises(ValueError, match="lightness"):
        weighted(out, ab)
    with pytest.raises(SystemExit):
        parse_config(["--head", "classification", "--rgb_log_weight", "0.5"])
